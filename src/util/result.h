// ctrust::Result<T>: errors as values.
//
// Every operation that can fail returns Result<T>, which holds either a T or an Error.
// An Error carries a portable code, the native code that caused it (errno, an OpenSSL
// error, a TSS2_RC) and a one-line human message with its context. A verification that
// rejects its input is not an Error: it is a normal value with reasons.
//
// Thread safety: plain value types; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ctrust {

enum class Errc : std::uint8_t {
  kInvalidArgument,  // the caller (or user) passed something unusable
  kIo,               // a system call failed; native() holds errno
  kFormat,           // untrusted bytes are malformed
  kTruncated,        // input ends in the middle of a record
  kLimit,            // input exceeds a documented limit
  kUnsupported,      // well-formed but not something we handle
  kCrypto,           // OpenSSL failed; native() holds the OpenSSL error code
  kNotFound,
  kTpm,  // the TPM or the TSS failed; native() holds the TSS2_RC
  kInternal,
};

const char* errc_name(Errc code);

class Error {
 public:
  Error(Errc code, std::string message, std::int64_t native = 0)
      : code_(code), native_(native), message_(std::move(message)) {}

  Errc code() const { return code_; }
  std::int64_t native() const { return native_; }
  const std::string& message() const { return message_; }

  // Prefixes context ("reading LOG: ") so that callers can say where an error happened.
  Error with_context(const std::string& context) && {
    message_ = context + ": " + message_;
    return std::move(*this);
  }

 private:
  Errc code_;
  std::int64_t native_;
  std::string message_;
};

// An Error from errno, with strerror text appended.
Error errno_error(const std::string& what, int err);
// An Error from the OpenSSL error queue (which it clears), with its text appended.
Error openssl_error(const std::string& what);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return *error_; }
  Error&& error() && { return std::move(*error_); }

 private:
  std::optional<Error> error_;
};

inline Result<void> ok_result() { return {}; }

}  // namespace ctrust

#define CTRUST_CONCAT_INNER_(a, b) a##b
#define CTRUST_CONCAT_(a, b) CTRUST_CONCAT_INNER_(a, b)

// Returns the error of a Result<...> expression from the enclosing function.
#define CTRUST_TRY(expr)                                                        \
  do {                                                                          \
    auto&& ctrust_try_result_ = (expr);                                         \
    if (!ctrust_try_result_.ok()) return std::move(ctrust_try_result_).error(); \
  } while (0)

// Declares `lhs` from a Result<T> expression, or returns its error.
#define CTRUST_ASSIGN_OR_RETURN(lhs, expr) \
  CTRUST_ASSIGN_OR_RETURN_IMPL_(CTRUST_CONCAT_(ctrust_result_, __LINE__), lhs, expr)
#define CTRUST_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                                    \
  auto tmp = (expr);                            /* NOLINT(bugprone-macro-parentheses) */ \
  if (!tmp.ok()) return std::move(tmp).error(); /* NOLINT(bugprone-macro-parentheses) */ \
  lhs = std::move(tmp).value()                  /* NOLINT(bugprone-macro-parentheses) */
