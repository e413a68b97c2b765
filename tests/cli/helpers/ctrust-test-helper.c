// A static helper for tests/cli/agent_test.sh: the file operations a container's process
// can do that busybox cannot (writable shared mappings, executing a memfd).
//   ctrust-test-helper mmapwrite FILE          change one byte through MAP_SHARED, fd closed first
//   ctrust-test-helper mmaphold FILE SECONDS   keep FILE mapped writable for SECONDS
//   ctrust-test-helper memfdexec FILE ARG0...  copy FILE into a memfd and fexecve it
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char* what) {
  perror(what);
  return 2;
}

static unsigned char* map_writable(const char* path) {
  int fd = open(path, O_RDWR);
  if (fd < 0) return NULL;
  unsigned char* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);  // the mapping keeps the file open for writing
  return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char** argv) {
  if (argc >= 3 && strcmp(argv[1], "mmapwrite") == 0) {
    unsigned char* p = map_writable(argv[2]);
    if (p == NULL) return fail("mmap");
    p[4000] ^= 0x55;  // past the ELF headers: the file still runs, with other content
    if (msync(p, 4096, MS_SYNC) != 0) return fail("msync");
    munmap(p, 4096);
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "mmaphold") == 0) {
    unsigned char* p = map_writable(argv[2]);
    if (p == NULL) return fail("mmap");
    printf("mapped\n");
    fflush(stdout);
    sleep((unsigned)atoi(argv[3]));
    munmap(p, 4096);
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "memfdexec") == 0) {
    int in = open(argv[2], O_RDONLY);
    if (in < 0) return fail("open");
    int mfd = memfd_create("payload", MFD_CLOEXEC);
    if (mfd < 0) return fail("memfd_create");
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
      if (write(mfd, buf, (size_t)n) != n) return fail("write");
    }
    extern char** environ;
    fexecve(mfd, argv + 3, environ);
    return fail("fexecve");
  }
  fprintf(stderr, "usage: ctrust-test-helper mmapwrite|mmaphold|memfdexec ...\n");
  return 64;
}
