{
  "targets": [
    {
      "target_name": "gvfs_native",
      "sources": ["src/binding.c", "src/pool.c", "src/ops.c", "src/dirops.c", "src/lookups.c", "src/fuse_ll.c", "src/notify.c", "src/fanwatch.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"],
      "include_dirs": ["<!@(pkg-config --cflags-only-I fuse3 | sed s/-I//g)"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lpthread"]
    }
  ]
}
