#include "util/result.h"

#include <cstring>

namespace ctrust {

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kIo:
      return "I/O error";
    case Errc::kFormat:
      return "malformed input";
    case Errc::kTruncated:
      return "truncated input";
    case Errc::kLimit:
      return "limit exceeded";
    case Errc::kUnsupported:
      return "unsupported";
    case Errc::kCrypto:
      return "cryptographic error";
    case Errc::kNotFound:
      return "not found";
    case Errc::kTpm:
      return "TPM error";
    case Errc::kInternal:
      return "internal error";
  }
  return "unknown error";
}

Error errno_error(const std::string& what, int err) {
  return Error(Errc::kIo, what + ": " + std::strerror(err), err);
}

}  // namespace ctrust
