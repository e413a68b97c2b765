#include "imalog/log_writer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "imalog/binary.h"
#include "util/file.h"

namespace ctrust::imalog {

Result<LogWriter> LogWriter::open(const std::string& path, const LogWriterOptions& options) {
  LogWriter w;
  w.path_ = path;
  w.options_ = options;
  w.fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!w.fd_) return errno_error("cannot open log " + path, errno);
  if (::flock(w.fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error(Errc::kIo, "log " + path + " is held by another writer", errno);
    }
    return errno_error("cannot lock log " + path, errno);
  }
  struct stat st {};
  if (::fstat(w.fd_.get(), &st) != 0) return errno_error("cannot stat log " + path, errno);
  if (!S_ISREG(st.st_mode)) return Error(Errc::kInvalidArgument, path + " is not a regular file");

  auto file_size = static_cast<std::uint64_t>(st.st_size);
  // Before anything else, make sure this is a binary log in the format asked for: a
  // mismatch would make every record look corrupt, and a repair would then erase the log.
  if (file_size > 0) {
    std::uint8_t head[8 + crypto::kMaxDigestSize + kMaxTemplateNameLen];
    CTRUST_ASSIGN_OR_RETURN(std::size_t n, pread_full(w.fd_.get(), head, 0));
    auto found = detect_binary_format(ByteView(head, n));
    if (!found) {
      return Error(Errc::kFormat, path +
                                      " does not start with a binary measurement-list record; "
                                      "refusing to append to it or repair it");
    }
    if (found->header_alg != options.header_alg || found->order != ByteOrder::kLittle) {
      return Error(Errc::kInvalidArgument,
                   "log " + path + " has " + std::string(crypto::hash_name(found->header_alg)) +
                       (found->order == ByteOrder::kBig ? " big-endian" : "") +
                       " header digests, not " +
                       std::string(crypto::hash_name(options.header_alg)) +
                       " (give the log's own header algorithm)");
    }
  }

  // Scan what is there: every record must be whole and well-formed.
  UniqueFd scan_fd(::fcntl(w.fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!scan_fd) return errno_error("cannot duplicate fd", errno);
  CTRUST_ASSIGN_OR_RETURN(
      BinaryReader reader,
      BinaryReader::from_fd(std::move(scan_fd),
                            BinaryFormat{options.header_alg, ByteOrder::kLittle}));
  Entry e;
  std::optional<Error> tail_error;
  for (;;) {
    auto more = reader.next(e);
    if (!more) {
      if (more.error().code() == Errc::kIo) return std::move(more).error().with_context(path);
      tail_error = std::move(more).error();
      break;
    }
    if (!*more) break;
  }
  w.entries_ = reader.count();
  w.size_ = reader.offset();
  if (tail_error) {
    if (options.tail_policy == TailPolicy::kFail) {
      return Error(tail_error->code(),
                   "log " + path + " ends with a torn or corrupt record after entry " +
                       std::to_string(w.entries_) + " (" + tail_error->message() + "); " +
                       std::to_string(file_size - w.size_) +
                       " bytes would be removed by recovery (--repair)");
    }
    if (::ftruncate(w.fd_.get(), static_cast<off_t>(w.size_)) != 0 || ::fsync(w.fd_.get()) != 0) {
      return errno_error("cannot truncate the torn tail of " + path, errno);
    }
    w.recovery_ = Recovery{w.entries_, w.size_, file_size - w.size_, tail_error->message()};
  }
  return w;
}

Result<void> LogWriter::append(std::span<const Entry> entries, bool sync) {
  if (failed_) {
    return Error(Errc::kIo, "log " + path_ + " had a sync failure; its state on disk is unknown");
  }
  scratch_.clear();
  for (const Entry& e : entries) {
    if (e.template_digest.alg != options_.header_alg) {
      return Error(Errc::kInvalidArgument,
                   "entry header digest is " +
                       std::string(crypto::hash_name(e.template_digest.alg)) + " but log " + path_ +
                       " uses " + std::string(crypto::hash_name(options_.header_alg)));
    }
    CTRUST_TRY(append_binary(scratch_, e));
  }
  std::size_t done = 0;
  while (done < scratch_.size()) {
    ssize_t n = ::pwrite(fd_.get(), scratch_.data() + done, scratch_.size() - done,
                         static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      // Roll back so the file ends on a whole record again.
      if (::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) failed_ = true;
      return errno_error("cannot append to log " + path_, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (sync && ::fdatasync(fd_.get()) != 0) {
    failed_ = true;
    return errno_error("cannot sync log " + path_, errno);
  }
  size_ += scratch_.size();
  entries_ += entries.size();
  return ok_result();
}

Result<void> LogWriter::sync() {
  if (::fdatasync(fd_.get()) != 0) {
    failed_ = true;
    return errno_error("cannot sync log " + path_, errno);
  }
  return ok_result();
}

}  // namespace ctrust::imalog
