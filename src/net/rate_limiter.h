// Per-peer token buckets: each peer (an IP address) may make `burst` requests at once and
// `rate` per second after that. Used by the HTTP server for requests and, separately, for
// TLS handshakes.
//
// Memory is bounded: at most `max_peers` buckets are kept; when a new peer would exceed
// that, buckets that have refilled (idle peers) are dropped, then arbitrary ones.
//
// Thread safety: acquire() is thread safe (one mutex; a map lookup per call).
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ctrust::net {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // rate <= 0 or burst <= 0 disables the limiter (acquire() always allows).
  RateLimiter(double rate_per_second, double burst, std::size_t max_peers = 65536);

  bool enabled() const { return rate_ > 0 && burst_ > 0; }

  // Takes one token from `peer`'s bucket. Returns 0 if it had one, else the number of
  // whole seconds (at least 1) until it will: what a Retry-After header says.
  int acquire(std::string_view peer, Clock::time_point now = Clock::now());

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
  };
  void make_room(Clock::time_point now);

  double rate_;
  double burst_;
  std::size_t max_peers_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace ctrust::net
