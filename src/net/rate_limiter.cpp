#include "net/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace ctrust::net {

RateLimiter::RateLimiter(double rate_per_second, double burst, std::size_t max_peers)
    : rate_(rate_per_second),
      // A bucket must hold at least one whole token, or no request could ever pass.
      burst_(burst > 0 ? std::max(burst, 1.0) : 0.0),
      max_peers_(std::max<std::size_t>(max_peers, 1)) {}

void RateLimiter::make_room(Clock::time_point now) {
  // A bucket that has refilled is indistinguishable from a new one: dropping it loses
  // nothing. Only under a flood of distinct addresses are partly used buckets dropped.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    double elapsed = std::chrono::duration<double>(now - it->second.updated).count();
    if (it->second.tokens + elapsed * rate_ >= burst_) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
  while (buckets_.size() >= max_peers_) buckets_.erase(buckets_.begin());
}

int RateLimiter::acquire(std::string_view peer, Clock::time_point now) {
  if (!enabled()) return 0;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = buckets_.find(std::string(peer));
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_peers_) make_room(now);
    it = buckets_.emplace(std::string(peer), Bucket{burst_, now}).first;
  }
  Bucket& bucket = it->second;
  double elapsed = std::chrono::duration<double>(now - bucket.updated).count();
  if (elapsed > 0) {
    bucket.tokens = std::min(burst_, bucket.tokens + elapsed * rate_);
    bucket.updated = now;
  }
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    return 0;
  }
  double wait = (1.0 - bucket.tokens) / rate_;
  return static_cast<int>(std::clamp(std::ceil(wait), 1.0, 86400.0));
}

}  // namespace ctrust::net
