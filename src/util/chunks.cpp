// for_each_chunk (declared in util/file.h): sequential, pipe and read-ahead loops.
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "util/file.h"

namespace ctrust {
namespace {

// Big enough to amortise the syscall, small enough to stay in L2 while it is hashed.
constexpr std::size_t kChunkSize = std::size_t{256} * 1024;
// Read-ahead: a few larger buffers so the reader rarely waits for the hasher or the
// other way round.
constexpr std::size_t kSlotSize = std::size_t{1} << 20;
constexpr std::size_t kSlots = 4;

Result<std::uint64_t> read_loop(int fd, const std::function<Result<void>(ByteView)>& sink,
                                const ProgressFn& progress) {
  thread_local std::vector<std::uint8_t> buf(kChunkSize);
  std::uint64_t total = 0;
  for (;;) {
    ssize_t got = ::read(fd, buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return errno_error("read failed", errno);
    if (got == 0) break;
    auto n = static_cast<std::size_t>(got);
    CTRUST_TRY(sink(ByteView(buf.data(), n)));
    total += n;
    if (progress) progress(n);
  }
  return total;
}

Result<std::uint64_t> pread_loop(int fd, const std::function<Result<void>(ByteView)>& sink,
                                 const ProgressFn& progress) {
  thread_local std::vector<std::uint8_t> buf(kChunkSize);
  std::uint64_t total = 0;
  for (;;) {
    CTRUST_ASSIGN_OR_RETURN(std::size_t n, pread_full(fd, buf, static_cast<off_t>(total)));
    if (n == 0) break;
    CTRUST_TRY(sink(ByteView(buf.data(), n)));
    total += n;
    if (progress) progress(n);
    if (n < buf.size()) break;  // pread_full is short only at end of file
  }
  return total;
}

// One reader thread fills free slots in file order; the calling thread consumes full slots
// in the same order. Slot ownership moves through the two queues under one mutex.
class ReadAhead {
 public:
  explicit ReadAhead(int fd) : fd_(fd) {
    for (std::size_t i = 0; i < kSlots; ++i) {
      slots_[i].buf.resize(kSlotSize);
      free_.push_back(i);
    }
    reader_ = std::thread([this] { read_all(); });
  }
  ~ReadAhead() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    reader_.join();
  }
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  Result<std::uint64_t> consume(const std::function<Result<void>(ByteView)>& sink,
                                const ProgressFn& progress) {
    std::uint64_t total = 0;
    for (;;) {
      std::size_t i = 0;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return !full_.empty(); });
        i = full_.front();
        full_.pop_front();
      }
      Slot& slot = slots_[i];
      if (slot.error) return *slot.error;
      if (slot.n > 0) {
        CTRUST_TRY(sink(ByteView(slot.buf.data(), slot.n)));  // ~ReadAhead stops the reader
        total += slot.n;
        if (progress) progress(slot.n);
      }
      if (slot.last) return total;
      {
        std::lock_guard lock(mu_);
        free_.push_back(i);
      }
      cv_.notify_all();
    }
  }

 private:
  struct Slot {
    std::vector<std::uint8_t> buf;
    std::size_t n = 0;
    bool last = false;
    std::optional<Error> error;
  };

  void read_all() {
    std::uint64_t offset = 0;
    for (;;) {
      std::size_t i = 0;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !free_.empty(); });
        if (stop_) return;
        i = free_.front();
        free_.pop_front();
      }
      Slot& slot = slots_[i];
      auto got = pread_full(fd_, slot.buf, static_cast<off_t>(offset));
      bool done = !got || *got < slot.buf.size();
      if (got) {
        slot.n = *got;
        offset += *got;
      } else {
        slot.n = 0;
        slot.error = std::move(got).error();
      }
      slot.last = done;
      {
        std::lock_guard lock(mu_);
        full_.push_back(i);
      }
      cv_.notify_all();
      if (done) return;
    }
  }

  int fd_;
  std::array<Slot, kSlots> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::size_t> free_;
  std::deque<std::size_t> full_;
  bool stop_ = false;
  std::thread reader_;
};

}  // namespace

Result<std::uint64_t> for_each_chunk(int fd, const std::function<Result<void>(ByteView)>& sink,
                                     const ProgressFn& progress) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("cannot stat", errno);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return read_loop(fd, sink, progress);
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) >= kPipelineThreshold) {
    ReadAhead pipeline(fd);
    return pipeline.consume(sink, progress);
  }
  return pread_loop(fd, sink, progress);
}

}  // namespace ctrust
