// Times one command inside a container, so that `runc exec` itself is not counted:
//   timeit PROGRAM ARG...   runs it (fork, execv, wait) and prints "ns=N status=S".
// Static, listed in the benchmark's policy like every other program of its image.
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: timeit PROGRAM ARG...\n");
    return 64;
  }
  long long start = now_ns();
  pid_t pid = fork();
  if (pid == 0) {
    execv(argv[1], argv + 1);
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return 70;
  long long took = now_ns() - start;
  printf("ns=%lld status=%d\n", took, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return 0;
}
