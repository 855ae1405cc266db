"""Two stored blocks for the store tests, one of each format."""

from zos_upgrade.flist.blocks import encrypt_block_v1, encrypt_block_v2

V2_REF, V2_DATA = encrypt_block_v2(b"version two block" * 100)
V1_REF, V1_DATA = encrypt_block_v1(b"version one block" * 100)
