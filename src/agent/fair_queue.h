// The agent's work queue between the fanotify thread and the hashing workers: fair between
// containers. Jobs of one owner (a container) run in the order they came, owners take turns,
// and no owner has more than `per_owner` jobs running at once, so that one container
// hashing huge files (or very many) cannot hold every worker while another container's
// exec waits (docs/EXEC_PATH.md, case 16).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

namespace ctrust::agent {

template <typename T>
class FairQueue {
 public:
  explicit FairQueue(std::size_t per_owner) : per_owner_(per_owner == 0 ? 1 : per_owner) {}

  void push(std::uint64_t owner, T item) {
    {
      std::lock_guard lock(mutex_);
      auto& q = queues_[owner];
      if (q.empty()) turns_.push_back(owner);
      q.push_back(std::move(item));
    }
    cv_.notify_one();
  }

  // The next job of an owner under its limit, waiting for one; nothing once stopped.
  // Call done(owner) when it has run.
  std::optional<std::pair<std::uint64_t, T>> pop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (stopped_) return std::nullopt;
      for (auto it = turns_.begin(); it != turns_.end(); ++it) {
        std::uint64_t owner = *it;
        if (auto r = running_.find(owner); r != running_.end() && r->second >= per_owner_) {
          continue;
        }
        auto& q = queues_[owner];
        std::pair<std::uint64_t, T> job{owner, std::move(q.front())};
        q.pop_front();
        turns_.erase(it);
        if (q.empty()) {
          queues_.erase(owner);
        } else {
          turns_.push_back(owner);  // its next job waits for the others' turns
        }
        ++running_[owner];
        return job;
      }
      cv_.wait(lock);
    }
  }

  void done(std::uint64_t owner) {
    {
      std::lock_guard lock(mutex_);
      auto it = running_.find(owner);
      if (it != running_.end() && --it->second == 0) running_.erase(it);
    }
    cv_.notify_all();
  }

  // pop() returns nothing from now on; queued jobs stay until clear().
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    cv_.notify_all();
  }
  void clear() {
    std::lock_guard lock(mutex_);
    queues_.clear();
    turns_.clear();
  }
  std::size_t queued() {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& [owner, q] : queues_) n += q.size();
    return n;
  }

 private:
  std::size_t per_owner_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::unordered_map<std::uint64_t, std::deque<T>> queues_;
  std::list<std::uint64_t> turns_;  // owners with queued jobs, next turn first
  std::unordered_map<std::uint64_t, std::size_t> running_;
  bool stopped_ = false;
};

}  // namespace ctrust::agent
