// The attacker's shared object in tests/cli/exec_path_test.sh: its constructor writes the
// file named by CTRUST_MARK, proof that its code ran. Never listed in any policy.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void ran(void) {
  const char* path = getenv("CTRUST_MARK");
  if (path == NULL) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    (void)!write(fd, "ran\n", 4);
    close(fd);
  }
}
