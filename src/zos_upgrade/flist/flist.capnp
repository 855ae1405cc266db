# The v1 (0-flist) metadata schema, written from SPEC 4.2: entries and ACLs are unpacked messages of
# these structs. The file id and the field ordinals are what make it wire-compatible with zflist.
@0xae9223e76351538a;

struct FileBlock {
  hash @0 :Data;
  key @1 :Data;
}

struct File {
  # written as 128 (128 x 4 KiB = 512 KiB blocks); ignored when reading
  blockSize @0 :UInt16;
  blocks @1 :List(FileBlock);
}

struct Link {
  target @0 :Text;
}

struct SubDir {
  # the entries-table key of the child directory
  key @0 :Text;
}

struct Special {
  enum Type {
    socket @0;
    block @1;
    chardev @2;
    fifopipe @3;
    unknown @4;
  }
  type @0 :Type;
  # "major,minor" for block and character devices
  data @1 :Data;
}

struct Inode {
  name @0 :Text;
  size @1 :UInt64;
  attributes :union {
    dir @2 :SubDir;
    file @3 :File;
    link @4 :Link;
    special @5 :Special;
  }
  aclkey @6 :Text;
  modificationTime @7 :UInt32;
  creationTime @8 :UInt32;
}

struct Dir {
  name @0 :Text;
  location @1 :Text;
  contents @2 :List(Inode);
  parent @3 :Text;
  size @4 :UInt64;
  aclkey @5 :Text;
  modificationTime @6 :UInt32;
  creationTime @7 :UInt32;
}

struct ACI {
  struct Right {
    right @0 :Text;
    usergroupid @1 :UInt16;
  }
  uname @0 :Text;
  gname @1 :Text;
  mode @2 :UInt16;
  rights @3 :List(Right);
  id @4 :UInt32;
  uid @5 :Int64 = -1;
  gid @6 :Int64 = -1;
}
