// A listed, dynamically linked program for tests/cli/exec_path_test.sh that keeps libc
// mapped: `dynsleep SECONDS FILE` sleeps, then writes FILE (proof it lived on).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 3) return 64;
  sleep((unsigned)atoi(argv[1]));
  int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 2;
  (void)!write(fd, "lived\n", 6);
  return close(fd) == 0 ? 0 : 2;
}
