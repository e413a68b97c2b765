// openssl_error (util/result.h), in a file of its own: a program that never calls OpenSSL
// (the static ctrust-hook) then links no part of libcrypto.
#include <openssl/err.h>

#include "util/result.h"

namespace ctrust {

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
