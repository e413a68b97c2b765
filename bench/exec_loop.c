// The exec loop of bench/agent_bench.sh: fork + execve of static binaries, timed.
//   exec_loop [-w] N PATH...   runs N execs, cycling through the PATHs (argv[0] = PATH,
//                              empty environment), waits for each; prints
//                              "ns_per_exec=X n=N failed=F". -w: exec each PATH once first,
//                              untimed (a warm-up, so that the timed execs hit the caches).
// Built with -DEXEC_LOOP_TRUE -nostdlib it is instead the tiny static `true` that the loop
// runs: _start calls exit(0), nothing else (a few KiB, no loader, no libc start-up).
//   gcc -static -O2 -o exec_loop bench/exec_loop.c
//   gcc -static -nostdlib -O2 -DEXEC_LOOP_TRUE -o true bench/exec_loop.c
#ifdef EXEC_LOOP_TRUE
void _start(void) {
  __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall");
  __builtin_unreachable();
}
#else
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int run(char* path) {
  char* argv[] = {path, NULL};
  char* envp[] = {NULL};
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execve(path, argv, envp);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char** argv) {
  int warm = 0;
  int i = 1;
  if (i < argc && strcmp(argv[i], "-w") == 0) {
    warm = 1;
    ++i;
  }
  if (argc - i < 2) {
    fprintf(stderr, "usage: exec_loop [-w] N PATH...\n");
    return 2;
  }
  long n = strtol(argv[i], NULL, 10);
  char** paths = argv + i + 1;
  int npaths = argc - i - 1;
  if (n <= 0) return 2;
  long failed = 0;
  if (warm) {
    for (int p = 0; p < npaths; ++p) failed += run(paths[p]) != 0;
  }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long k = 0; k < n; ++k) failed += run(paths[k % npaths]) != 0;
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
  printf("ns_per_exec=%.0f n=%ld failed=%ld\n", ns / (double)n, n, failed);
  return failed == 0 ? 0 : 1;
}
#endif
