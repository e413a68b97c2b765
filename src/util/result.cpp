#include "util/result.h"

#include <openssl/err.h>

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

Error openssl_error(const std::string& what) {
  unsigned long first = ERR_peek_error();
  std::string text = what;
  if (first != 0) {
    char buf[256];
    ERR_error_string_n(first, buf, sizeof(buf));
    text += ": ";
    text += buf;
  }
  ERR_clear_error();
  return Error(Errc::kCrypto, text, static_cast<std::int64_t>(first));
}

}  // namespace ctrust
