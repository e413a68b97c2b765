// The agent's digest cache: a file's measured digest, reused on its next exec or open
// without hashing again, and never stale.
//
// Why it cannot go stale (PLATFORM_NOTES.md, "fanotify behaviour"): mtime and ctime do not
// see writes through a shared writable mmap(), and this kernel lets a file mapped writable
// be executed. So the cache does not trust time stamps. Every cached file is held open
// with a read lease (fcntl F_SETLEASE, F_RDLCK). The kernel grants one only while nobody
// has the file open for writing (a writable mapping keeps its file open, so it counts),
// and it breaks the lease before anyone opens the file for writing or truncates it: the
// writer's open() waits while the kernel signals us (F_SETSIG) and we drop the entry and
// close our descriptor. Rename-over gives a new inode, so a new key. Overlay copy-up opens
// the file for writing, so it breaks the lease too.
//
// Protocol for a miss: begin() takes the lease before the file is hashed, so any writer
// that comes after it is held back or seen; finish() then caches the digest unless the
// lease broke meanwhile. A file that has a writer now gets no lease: begin() says so, and
// the caller cannot vouch that what runs is what it hashed (the agent then denies in
// enforce mode, or records a violation).
//
// The lease-break signal (lease_signal()) must be blocked in every thread of the process,
// so that only signal_fd() receives it: block_lease_signal() before any thread starts.
// begin() directs the break to the whole process (F_SETOWN_EX, F_OWNER_PID), so any thread
// may take a lease while another drains.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "crypto/digest.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::agent {

// SIGRTMIN + 3: not used by glibc or by the libraries ctrust links.
int lease_signal();
// Blocks lease_signal() (and SIGIO, the kernel's fallback when its queue is full) in the
// calling thread; threads created afterwards inherit the mask.
Result<void> block_lease_signal();

struct FileKey {
  // Who the digest is for: the agent's container number, or kImageOwner.
  std::uint64_t owner = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileKey&) const = default;
};

struct DigestCacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t broken = 0;   // leases broken by a writer (entries dropped)
  std::uint64_t writers = 0;  // files that had a writer when asked
  std::uint64_t evicted = 0;
  std::uint64_t kernel = 0;  // entries cached in the kernel too (ignore marks)
  std::size_t entries = 0;
  std::size_t image_entries = 0;  // of kImageOwner, in their own room
};

class DigestCache {
 public:
  // The owner of image files' fs-verity digests (image_files.h), which no container number
  // is: held as leased as the others, but in a room of their own, so that the walk of a
  // large image at a container's start never evicts the exec path's entries.
  static constexpr std::uint64_t kImageOwner = 0;

  // `max_entries` files at most for containers and `image_entries` for kImageOwner (each
  // entry holds a descriptor); the least recently used of the same room goes. With no room
  // for images, finish() caches no kImageOwner key.
  static Result<DigestCache> create(std::size_t max_entries, std::size_t image_entries = 0);
  DigestCache(DigestCache&& other) noexcept;
  DigestCache& operator=(DigestCache&&) = delete;
  ~DigestCache();

  // The key of an open file; its device and inode.
  static Result<FileKey> key_of(int fd, std::uint64_t owner);

  std::optional<crypto::Digest> find(const FileKey& key);

  enum class Lease : std::uint8_t {
    kHeld,     // nobody can write the file until finish() or the entry is dropped
    kWriters,  // the file is open for writing (or mapped writable) now
  };
  // Takes a read lease on `fd` (which must stay open until finish()).
  Result<Lease> begin(int fd);
  // Whether `fd`'s file is open for writing (or mapped writable) now, asked without leaving
  // a lease behind: a read lease is taken and given back at once, or refused for a writer.
  static Result<bool> has_writers(int fd);
  // Caches `digest` for `key`, keeping `fd` (the leased descriptor) open, unless the lease
  // broke after begin(); returns false then (and closes `fd`).
  bool finish(const FileKey& key, UniqueFd fd, const crypto::Digest& digest);
  // The same for a file held through several leased descriptors (an overlayfs file and
  // its real upper file, whose writable mappings the overlay inode does not see): cached
  // only if none of their leases broke.
  bool finish(const FileKey& key, std::vector<UniqueFd> fds, const crypto::Digest& digest);

  // Kernel-side caching: when finish() is given `kernel = true` and caches, it calls
  // `ignore(fds[0])` (the caller's fanotify ignore mark); when such an entry is dropped for
  // any reason (lease break, eviction, owner), `unignore(fds[0])` runs before the leases
  // are released, so no writer can change the file while the kernel skips the agent.
  struct KernelHooks {
    std::function<bool(int)> ignore;  // true if the mark was set
    std::function<void(int)> unignore;
  };
  void set_kernel_hooks(KernelHooks hooks);
  // Called when a writer breaks the lease of a cached entry, before the lease is released:
  // the writer's open() is still waiting, so whatever the hook does (the agent ends the
  // processes that have the file mapped executable) happens before a byte is written.
  // `fds` are the entry's descriptors (the file, and its real upper file on overlayfs).
  // Runs with the cache locked: the hook must not call into the cache.
  using BreakHook = std::function<void(const FileKey& key, const std::vector<int>& fds)>;
  void set_break_hook(BreakHook hook);
  // Called whenever an entry goes (a break, eviction, its owner, clear), before its leases
  // are released: whatever relied on the lease (the exec gate's pinned verdict) must stop
  // relying on it now. Runs with the cache locked.
  using EraseHook = std::function<void(const FileKey& key)>;
  void set_erase_hook(EraseHook hook);
  bool finish(const FileKey& key, std::vector<UniqueFd> fds, const crypto::Digest& digest,
              bool kernel);

  // Gives up a begin() whose file could not be measured (the caller closes `fd`).
  void abandon(int fd);

  // True if a lease on `key`'s file broke less than kWriterBackoff ago. A writer whose
  // open(O_NONBLOCK) met a lease gets EAGAIN and retries; its retries are opens the agent is
  // asked about too, and a new lease each time would keep it failing. Callers skip the
  // lease (and the cache) for opens of such a file; execs still take one.
  static constexpr std::chrono::milliseconds kWriterBackoff{2000};
  bool recently_broken(const FileKey& key);

  // Readable when a lease-break signal is pending; call drain() then.
  int signal_fd() const { return signal_fd_.get(); }
  // Handles every pending lease break: drops the entries, releasing their leases so the
  // writers go on. With a lost signal (queue overflow) the whole cache is dropped.
  void drain();
  // Drops every entry of `owner` (a container that stopped).
  void drop_owner(std::uint64_t owner);
  // Drops the kImageOwner entries whose file has no name left (an image that was removed):
  // the entry's descriptor would keep its blocks allocated. Returns how many went.
  std::size_t drop_unlinked_images();
  void clear();

  DigestCacheStats stats();
  // The room for kImageOwner entries (0: none are cached).
  std::size_t image_room() const { return image_max_; }

 private:
  struct KeyHash {
    std::size_t operator()(const FileKey& k) const noexcept {
      return std::hash<std::uint64_t>()(k.ino * 0x9e3779b97f4a7c15ULL ^ k.dev ^ (k.owner << 40));
    }
  };
  struct Slot {
    FileKey key;
    std::vector<UniqueFd> fds;  // each holds a lease
    crypto::Digest digest;
    bool ignored = false;  // a kernel ignore mark is set on fds[0]'s inode
  };
  DigestCache(UniqueFd signal_fd, std::size_t max, std::size_t image_max)
      : signal_fd_(std::move(signal_fd)), max_(max), image_max_(image_max) {}
  void drop_fd_locked(int fd);
  void erase_locked(std::list<Slot>::iterator it);
  std::list<Slot>& room(const FileKey& key) { return key.owner == kImageOwner ? image_lru_ : lru_; }
  void erase_all_locked();

  UniqueFd signal_fd_;
  std::size_t max_;
  std::size_t image_max_;
  std::mutex mutex_;
  std::list<Slot> lru_;        // most recent first
  std::list<Slot> image_lru_;  // kImageOwner's, most recent first
  std::unordered_map<FileKey, std::list<Slot>::iterator, KeyHash> by_key_;
  std::unordered_map<int, std::list<Slot>::iterator> by_fd_;
  std::unordered_map<int, bool> pending_;  // fd -> lease broke since begin()
  std::unordered_map<FileKey, std::chrono::steady_clock::time_point, KeyHash> broken_at_;
  void note_broken_locked(const FileKey& key);
  DigestCacheStats stats_;
  KernelHooks hooks_;
  BreakHook break_hook_;
  EraseHook erase_hook_;
};

}  // namespace ctrust::agent
