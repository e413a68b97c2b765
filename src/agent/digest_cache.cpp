#include "agent/digest_cache.h"

#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

namespace ctrust::agent {

int lease_signal() { return SIGRTMIN + 3; }

namespace {

sigset_t lease_signals() {
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, lease_signal());
  ::sigaddset(&set, SIGIO);
  return set;
}

}  // namespace

Result<void> block_lease_signal() {
  sigset_t set = lease_signals();
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    return errno_error("blocking the lease signal", rc);
  }
  return ok_result();
}

Result<DigestCache> DigestCache::create(std::size_t max_entries, std::size_t image_entries) {
  if (max_entries == 0) return Error(Errc::kInvalidArgument, "a digest cache needs room");
  sigset_t set = lease_signals();
  sigset_t blocked;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
  if (::sigismember(&blocked, lease_signal()) != 1) {
    return Error(Errc::kInternal,
                 "the lease signal is not blocked: call block_lease_signal() before threads start");
  }
  UniqueFd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return errno_error("signalfd for lease breaks", errno);
  return DigestCache(std::move(fd), max_entries, image_entries);
}

DigestCache::DigestCache(DigestCache&& other) noexcept
    : signal_fd_(std::move(other.signal_fd_)), max_(other.max_), image_max_(other.image_max_) {
  std::lock_guard lock(other.mutex_);
  lru_ = std::move(other.lru_);
  image_lru_ = std::move(other.image_lru_);
  by_key_ = std::move(other.by_key_);
  by_fd_ = std::move(other.by_fd_);
  pending_ = std::move(other.pending_);
  stats_ = other.stats_;
  hooks_ = std::move(other.hooks_);
}

DigestCache::~DigestCache() = default;

Result<FileKey> DigestCache::key_of(int fd, std::uint64_t owner) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat", errno);
  return FileKey{owner, st.st_dev, st.st_ino};
}

std::optional<crypto::Digest> DigestCache::find(const FileKey& key) {
  std::lock_guard lock(mutex_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  auto& list = room(key);
  list.splice(list.begin(), list, it->second);
  ++stats_.hits;
  return it->second->digest;
}

Result<DigestCache::Lease> DigestCache::begin(int fd) {
  {
    std::lock_guard lock(mutex_);
    pending_[fd] = false;  // before the lease: a break may come at once
  }
  auto undo = [&] {
    std::lock_guard lock(mutex_);
    pending_.erase(fd);
  };
  // A break is signalled to the whole process, so that signal_fd() sees it whichever
  // thread took the lease.
  f_owner_ex owner{F_OWNER_PID, ::getpid()};
  if (::fcntl(fd, F_SETOWN_EX, &owner) != 0) {
    int err = errno;
    undo();
    return errno_error("F_SETOWN_EX", err);
  }
  if (::fcntl(fd, F_SETSIG, lease_signal()) != 0) {
    int err = errno;
    undo();
    return errno_error("F_SETSIG", err);
  }
  if (::fcntl(fd, F_SETLEASE, F_RDLCK) != 0) {
    int err = errno;
    undo();
    if (err == EAGAIN || err == EBUSY) {
      std::lock_guard lock(mutex_);
      ++stats_.writers;
      return Lease::kWriters;
    }
    return errno_error("taking a read lease", err);
  }
  return Lease::kHeld;
}

Result<bool> DigestCache::has_writers(int fd) {
  // No owner and no signal are set on `fd`: a writer that meets this lease in the moment it
  // exists waits in break_lease() only until the F_UNLCK below.
  if (::fcntl(fd, F_SETLEASE, F_RDLCK) != 0) {
    int err = errno;
    if (err == EAGAIN || err == EBUSY) return true;
    return errno_error("taking a read lease", err);
  }
  if (::fcntl(fd, F_SETLEASE, F_UNLCK) != 0) return errno_error("giving a read lease back", errno);
  return false;
}

bool DigestCache::finish(const FileKey& key, UniqueFd fd, const crypto::Digest& digest) {
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(fd));
  return finish(key, std::move(fds), digest);
}

void DigestCache::erase_locked(std::list<Slot>::iterator it) {
  // The kernel must ask again before any lease is released and a writer can go on.
  if (it->ignored && hooks_.unignore) hooks_.unignore(it->fds[0].get());
  if (erase_hook_) erase_hook_(it->key);
  for (const auto& f : it->fds) by_fd_.erase(f.get());
  auto& list = room(it->key);
  by_key_.erase(it->key);
  list.erase(it);  // closes the descriptors, releasing their leases
}

void DigestCache::erase_all_locked() {
  while (!lru_.empty()) erase_locked(lru_.begin());
  while (!image_lru_.empty()) erase_locked(image_lru_.begin());
}

void DigestCache::set_kernel_hooks(KernelHooks hooks) {
  std::lock_guard lock(mutex_);
  hooks_ = std::move(hooks);
}

void DigestCache::set_break_hook(BreakHook hook) {
  std::lock_guard lock(mutex_);
  break_hook_ = std::move(hook);
}

void DigestCache::set_erase_hook(EraseHook hook) {
  std::lock_guard lock(mutex_);
  erase_hook_ = std::move(hook);
}

bool DigestCache::finish(const FileKey& key, std::vector<UniqueFd> fds,
                         const crypto::Digest& digest) {
  return finish(key, std::move(fds), digest, false);
}

bool DigestCache::finish(const FileKey& key, std::vector<UniqueFd> fds,
                         const crypto::Digest& digest, bool kernel) {
  std::lock_guard lock(mutex_);
  bool broken = fds.empty();
  for (const auto& f : fds) {
    auto pending = pending_.find(f.get());
    broken = broken || pending == pending_.end() || pending->second;
    if (pending != pending_.end()) pending_.erase(pending);
  }
  if (broken) {
    if (!fds.empty()) note_broken_locked(key);
    return false;  // `fds` close here, releasing the leases
  }
  auto& list = room(key);
  std::size_t max = key.owner == kImageOwner ? image_max_ : max_;
  if (max == 0) return false;  // no room for images: nothing is cached
  if (auto old = by_key_.find(key); old != by_key_.end()) erase_locked(old->second);
  while (list.size() >= max) {
    erase_locked(std::prev(list.end()));
    ++stats_.evicted;
  }
  std::vector<int> raw;
  raw.reserve(fds.size());
  for (const auto& f : fds) raw.push_back(f.get());
  list.push_front(Slot{key, std::move(fds), digest, false});
  by_key_[key] = list.begin();
  for (int r : raw) by_fd_[r] = list.begin();
  // Under the lock: a lease break handled after this sees `ignored` and undoes it first.
  if (kernel && hooks_.ignore && hooks_.ignore(raw[0])) {
    list.front().ignored = true;
    ++stats_.kernel;
  }
  return true;
}

void DigestCache::abandon(int fd) {
  std::lock_guard lock(mutex_);
  pending_.erase(fd);
}

void DigestCache::drop_fd_locked(int fd) {
  if (auto p = pending_.find(fd); p != pending_.end()) {
    p->second = true;  // the hashing thread closes it in finish()
    ++stats_.broken;
    return;
  }
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return;  // already gone (evicted, or a late signal)
  note_broken_locked(it->second->key);
  if (break_hook_) {
    std::vector<int> fds;
    for (const auto& f : it->second->fds) fds.push_back(f.get());
    break_hook_(it->second->key, fds);  // the writer still waits
  }
  erase_locked(it->second);  // the writer proceeds
  ++stats_.broken;
}

void DigestCache::note_broken_locked(const FileKey& key) {
  auto now = std::chrono::steady_clock::now();
  if (broken_at_.size() >= 4096) {
    std::erase_if(broken_at_, [&](const auto& kv) { return now - kv.second >= kWriterBackoff; });
    if (broken_at_.size() >= 4096) broken_at_.clear();  // bounded, whatever the load
  }
  broken_at_[key] = now;
}

bool DigestCache::recently_broken(const FileKey& key) {
  std::lock_guard lock(mutex_);
  auto it = broken_at_.find(key);
  if (it == broken_at_.end()) return false;
  if (std::chrono::steady_clock::now() - it->second < kWriterBackoff) return true;
  broken_at_.erase(it);
  return false;
}

void DigestCache::drain() {
  signalfd_siginfo info[16];
  for (;;) {
    ssize_t n = ::read(signal_fd_.get(), info, sizeof(info));
    if (n <= 0) return;  // EAGAIN: nothing more
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof(info[0]); ++i) {
      if (static_cast<int>(info[i].ssi_signo) == lease_signal()) {
        drop_fd_locked(info[i].ssi_fd);
      } else {
        // SIGIO: the kernel's real-time queue overflowed and we do not know which lease
        // broke; drop everything rather than keep one stale digest.
        for (auto& [fd, broken] : pending_) broken = true;
        stats_.broken += lru_.size() + image_lru_.size();
        erase_all_locked();
      }
    }
  }
}

void DigestCache::drop_owner(std::uint64_t owner) {
  std::lock_guard lock(mutex_);
  auto& list = room(FileKey{owner, 0, 0});
  for (auto it = list.begin(); it != list.end();) {
    auto next = std::next(it);
    if (it->key.owner == owner) erase_locked(it);
    it = next;
  }
}

std::size_t DigestCache::drop_unlinked_images() {
  std::lock_guard lock(mutex_);
  std::size_t dropped = 0;
  for (auto it = image_lru_.begin(); it != image_lru_.end();) {
    auto next = std::next(it);
    struct stat st {};
    if (::fstat(it->fds[0].get(), &st) == 0 && st.st_nlink == 0) {
      erase_locked(it);
      ++dropped;
    }
    it = next;
  }
  return dropped;
}

void DigestCache::clear() {
  std::lock_guard lock(mutex_);
  erase_all_locked();
}

DigestCacheStats DigestCache::stats() {
  std::lock_guard lock(mutex_);
  DigestCacheStats s = stats_;
  s.entries = lru_.size();
  s.image_entries = image_lru_.size();
  return s;
}

}  // namespace ctrust::agent
