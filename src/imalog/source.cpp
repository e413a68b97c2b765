#include "imalog/source.h"

#include <fcntl.h>
#include <unistd.h>

#include "imalog/ascii.h"
#include "imalog/binary.h"
#include "util/file.h"

namespace ctrust::imalog {

Result<std::unique_ptr<EntrySource>> open_log(const std::string& path, const OpenOptions& options) {
  UniqueFd fd;
  if (path == "-") {
    fd.reset(::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0));
    if (!fd) return errno_error("cannot use standard input", errno);
  } else {
    CTRUST_ASSIGN_OR_RETURN(fd, open_read(path));
  }
  LogForm form = options.form;
  if (form == LogForm::kAuto) {
    std::uint8_t head[16];
    auto n = pread_full(fd.get(), head, 0);
    if (!n) {
      // A pipe cannot be peeked without consuming it: say how to name the form.
      if (n.error().native() == ESPIPE) {
        return Error(Errc::kInvalidArgument,
                     path + ": cannot detect the form of a pipe; give --input-form binary|ascii");
      }
      return std::move(n).error().with_context(path);
    }
    form = looks_ascii(ByteView(head, *n)) ? LogForm::kAscii : LogForm::kBinary;
  }
  std::unique_ptr<EntrySource> src;
  if (form == LogForm::kAscii) {
    CTRUST_ASSIGN_OR_RETURN(AsciiReader r, AsciiReader::from_fd(std::move(fd)));
    src = std::make_unique<AsciiReader>(std::move(r));
  } else {
    std::optional<BinaryFormat> fmt;
    if (options.header_alg || options.order) {
      fmt = BinaryFormat{options.header_alg.value_or(HashAlg::kSha1),
                         options.order.value_or(ByteOrder::kLittle)};
    }
    auto r = BinaryReader::from_fd(std::move(fd), fmt);
    if (!r) return std::move(r).error().with_context(path);
    src = std::make_unique<BinaryReader>(std::move(*r));
  }
  return src;
}

}  // namespace ctrust::imalog
