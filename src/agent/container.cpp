#include "agent/container.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <chrono>

namespace ctrust::agent {

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<FileId> file_id(int fd) {
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH,
              STATX_TYPE | STATX_INO | STATX_MNT_ID | STATX_CTIME | STATX_SIZE, &sx) != 0) {
    return errno_error("statx", errno);
  }
  FileId id;
  id.mode = sx.stx_mode;
  id.dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  id.ino = sx.stx_ino;
  id.mnt_id = (sx.stx_mask & STATX_MNT_ID) != 0 ? sx.stx_mnt_id : 0;
  id.mount_root = (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
                  (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  id.ctime.tv_sec = sx.stx_ctime.tv_sec;
  id.ctime.tv_nsec = sx.stx_ctime.tv_nsec;
  id.size = sx.stx_size;
  return id;
}

ino_t mount_ns(pid_t pid) {
  struct stat st {};
  std::string path = "/proc/" + std::to_string(pid) + "/ns/mnt";
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace ctrust::agent
