"""Release authenticity through The Update Framework: the repository side and the node's trust."""
