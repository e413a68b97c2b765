// A static helper for tests/cli/agent_test.sh: the file operations a container's process
// can do that busybox cannot (writable shared mappings, executing a memfd).
//   ctrust-test-helper mmapwrite FILE          change one byte through MAP_SHARED, fd closed first
//   ctrust-test-helper mmaphold FILE SECONDS   keep FILE mapped writable for SECONDS
//   ctrust-test-helper memfdexec FILE ARG0...  copy FILE into a memfd and fexecve it
//   ctrust-test-helper memfdexecx XFILE ARG0... the same with a XOR-encoded file (see xor)
//   ctrust-test-helper xor IN OUT              OUT = IN with every byte XOR 0x5a (payloads are
//                                              kept encoded, so that they are not ELF files)
//   ctrust-test-helper memfdpreload XFILE PROG ARG0...
//                                              decode XFILE into a memfd and run PROG with
//                                              LD_PRELOAD=/proc/self/fd/N
//   ctrust-test-helper mprotectexec FILE       map FILE readable, then mprotect(PROT_EXEC),
//                                              and live on for half a second with it mapped
//   ctrust-test-helper threads N DIR SECONDS   N threads, started together once DIR/go exists
//                                              (DIR/ready says they wait), create and remove
//                                              files in DIR for SECONDS
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

static int fail(const char* what) {
  perror(what);
  return 2;
}

static int copy_xor(int in, int out, unsigned char key) {
  unsigned char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0) {
    for (ssize_t i = 0; i < n; i++) buf[i] ^= key;
    if (write(out, buf, (size_t)n) != n) return -1;
  }
  return n < 0 ? -1 : 0;
}

// The flood: every thread waits at the barrier, then creates, closes and removes files of
// its own until told to stop, so that each open is a new inode the agent is asked about, and
// up to N opens wait for an answer at once.
static const char* flood_dir;
static volatile int flood_stop;
static pthread_barrier_t flood_start;
static void* flood(void* arg) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/f%ld", flood_dir, (long)arg);
  pthread_barrier_wait(&flood_start);
  while (!flood_stop) {
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd >= 0) close(fd);
    unlink(path);
  }
  return NULL;
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
  if (argc >= 4 && (strcmp(argv[1], "memfdexec") == 0 || strcmp(argv[1], "memfdexecx") == 0)) {
    int in = open(argv[2], O_RDONLY);
    if (in < 0) return fail("open");
    int mfd = memfd_create("payload", MFD_CLOEXEC);
    if (mfd < 0) return fail("memfd_create");
    if (copy_xor(in, mfd, strcmp(argv[1], "memfdexecx") == 0 ? 0x5a : 0) != 0) return fail("copy");
    extern char** environ;
    fexecve(mfd, argv + 3, environ);
    return fail("fexecve");
  }
  if (argc == 4 && strcmp(argv[1], "xor") == 0) {
    int in = open(argv[2], O_RDONLY);
    int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (in < 0 || out < 0) return fail("open");
    if (copy_xor(in, out, 0x5a) != 0) return fail("copy");
    return close(out) == 0 ? 0 : fail("close");
  }
  if (argc >= 4 && strcmp(argv[1], "memfdpreload") == 0) {
    int in = open(argv[2], O_RDONLY);
    if (in < 0) return fail("open");
    int mfd = memfd_create("preload", 0);  // inherited by the exec
    if (mfd < 0) return fail("memfd_create");
    if (copy_xor(in, mfd, 0x5a) != 0) return fail("copy");
    char env[64];
    snprintf(env, sizeof(env), "/proc/self/fd/%d", mfd);
    setenv("LD_PRELOAD", env, 1);
    execv(argv[3], argv + 3);
    return fail("execv");
  }
  if (argc == 3 && strcmp(argv[1], "mprotectexec") == 0) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return fail("open");
    void* p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return fail("mmap");
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) return fail("mprotect");
    printf("executable\n");
    // A process that ran mapped code for a while, as one that uses it would: the agent
    // measures the mapping from it (one that is gone by then is logged by name only).
    struct timespec t = {0, 500000000};
    nanosleep(&t, NULL);
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "threads") == 0) {
    int n = atoi(argv[2]);
    flood_dir = argv[3];
    if (n <= 0 || pthread_barrier_init(&flood_start, NULL, (unsigned)n + 1) != 0) return 64;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 65536);
    pthread_t* t = calloc((size_t)n, sizeof(pthread_t));
    for (long i = 0; i < n; i++) {
      if (pthread_create(&t[i], &attr, flood, (void*)i) != 0) return fail("pthread_create");
    }
    // DIR/ready says every thread waits; DIR/go (made by whoever runs the test) lets them go.
    char path[4096];
    snprintf(path, sizeof(path), "%s/ready", flood_dir);
    int ready = open(path, O_WRONLY | O_CREAT, 0644);
    if (ready < 0) return fail("ready");
    close(ready);
    snprintf(path, sizeof(path), "%s/go", flood_dir);
    for (int waited = 0; access(path, F_OK) != 0; waited++) {
      if (waited > 6000) return fail("no go within 60 s");
      struct timespec ten_ms = {0, 10 * 1000 * 1000};
      nanosleep(&ten_ms, NULL);
    }
    pthread_barrier_wait(&flood_start);
    sleep((unsigned)atoi(argv[4]));
    flood_stop = 1;
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("%d threads\n", n);
    return 0;
  }
  fprintf(stderr, "usage: ctrust-test-helper mmapwrite|mmaphold|memfdexec|xor|memfdpreload|"
                  "mprotectexec|threads ...\n");
  return 64;
}
