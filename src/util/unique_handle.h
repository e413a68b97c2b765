// ctrust::UniqueHandle: the one move-only owner for every resource the project holds.
//
// A Traits class says what an empty handle looks like and how to release one:
//   struct Traits { using Value = ...; static Value invalid(); static void release(Value); };
// Aliases below cover file descriptors and OpenSSL objects; later modules add their own
// traits (BPF links, ESYS handles, child processes) rather than writing new owners.
//
// Thread safety: like a unique_ptr; one owner at a time.
#pragma once

#include <unistd.h>

#include <utility>

namespace ctrust {

template <typename Traits>
class UniqueHandle {
 public:
  using Value = typename Traits::Value;

  UniqueHandle() = default;
  explicit UniqueHandle(Value value) : value_(value) {}
  ~UniqueHandle() { reset(); }

  UniqueHandle(UniqueHandle&& other) noexcept : value_(other.release()) {}
  UniqueHandle& operator=(UniqueHandle&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;

  Value get() const { return value_; }
  bool valid() const { return value_ != Traits::invalid(); }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without releasing.
  [[nodiscard]] Value release() { return std::exchange(value_, Traits::invalid()); }

  void reset(Value value = Traits::invalid()) {
    Value old = std::exchange(value_, value);
    if (old != Traits::invalid()) Traits::release(old);
  }

 private:
  Value value_ = Traits::invalid();
};

struct FdTraits {
  using Value = int;
  static constexpr int invalid() { return -1; }
  static void release(int fd) { ::close(fd); }
};
using UniqueFd = UniqueHandle<FdTraits>;

// Owner for a pointer released by a C free function, e.g. PointerTraits<EVP_PKEY, EVP_PKEY_free>.
template <typename T, void (*Free)(T*)>
struct PointerTraits {
  using Value = T*;
  static constexpr T* invalid() { return nullptr; }
  static void release(T* p) { Free(p); }
};
template <typename T, void (*Free)(T*)>
using UniquePtr = UniqueHandle<PointerTraits<T, Free>>;

}  // namespace ctrust
