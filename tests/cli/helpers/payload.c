// The attacker's program in tests/cli/exec_path_test.sh: never listed in any policy.
//   payload mark FILE       write FILE (proof that it ran)
//   payload fork FILE       fork; the child writes FILE 300 ms later (outlives a late kill)
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int mark(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 2;
  (void)!write(fd, "ran\n", 4);
  return close(fd) == 0 ? 0 : 2;
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "mark") == 0) return mark(argv[2]);
  if (argc == 3 && strcmp(argv[1], "fork") == 0) {
    if (fork() == 0) {
      struct timespec t = {0, 300 * 1000 * 1000};
      nanosleep(&t, NULL);
      return mark(argv[2]);
    }
    return 0;
  }
  return 64;
}
