// Fuzzes the decoder of the BPF observers' ring-buffer records (bpf/observer_events.h).
// The records come from BPF programs we loaded, but are checked as if untrusted: an object
// of another ABI, or a bug on the BPF side, must give an error, never a misread. A decoded
// record must have the exact size of its kind, and its fields must be the record's own
// bytes (the filename bounded by the buffer, the stated length and the first NUL).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "events/bpf_observer.h"
#include "observer_events.h"

namespace {

void check_exec(const ctrust::events::ObservedEvent& e, const std::uint8_t* data,
                std::size_t size) {
  if (size != sizeof(ctrust_bpf_exec_event)) __builtin_trap();
  ctrust_bpf_exec_event raw;
  std::memcpy(&raw, data, sizeof(raw));
  if (e.pid != static_cast<pid_t>(raw.pid) || e.ino != raw.ino || e.nlink != raw.nlink) {
    __builtin_trap();
  }
  if (e.filename.size() > sizeof(raw.filename) || e.filename.size() > raw.filename_len) {
    __builtin_trap();
  }
  if (e.filename.find('\0') != std::string::npos) __builtin_trap();
  if (std::string_view(raw.filename, e.filename.size()) != e.filename) __builtin_trap();
  if (e.container != raw.container) __builtin_trap();
  if (e.killed && !e.unvouched) __builtin_trap();
  bool truncated = (raw.flags & CTRUST_BPF_EXEC_FILENAME_TRUNCATED) != 0;
  if (e.filename_truncated != truncated) __builtin_trap();
}

void check_namespace(const ctrust::events::ObservedEvent& e, const std::uint8_t* data,
                     std::size_t size) {
  if (size != sizeof(ctrust_bpf_namespace_event)) __builtin_trap();
  ctrust_bpf_namespace_event raw;
  std::memcpy(&raw, data, sizeof(raw));
  if (raw.syscall < CTRUST_BPF_NS_UNSHARE || raw.syscall > CTRUST_BPF_NS_CLONE3) __builtin_trap();
  if (e.ns_flags != raw.flags || e.setns_fd != raw.setns_fd) __builtin_trap();
  if (e.flags_unknown != (raw.read_failed != 0)) __builtin_trap();
}

void check_map(const ctrust::events::ObservedEvent& e, const std::uint8_t* data, std::size_t size) {
  if (size != sizeof(ctrust_bpf_map_event)) __builtin_trap();
  ctrust_bpf_map_event raw;
  std::memcpy(&raw, data, sizeof(raw));
  if (raw.syscall < CTRUST_BPF_MAP_MMAP || raw.syscall > CTRUST_BPF_MAP_SHMAT) __builtin_trap();
  if (e.ino != raw.ino || e.container != raw.container || e.map_fd != raw.fd) __builtin_trap();
  if (!e.unvouched || e.killed != ((raw.flags & CTRUST_BPF_MAP_KILLED) != 0)) __builtin_trap();
  if (e.name.size() > sizeof(raw.name) || e.name.find('\0') != std::string::npos) __builtin_trap();
  if (std::string_view(raw.name, e.name.size()) != e.name) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto decoded = ctrust::events::decode_observer_record(ctrust::ByteView(data, size));
  if (!decoded) return 0;
  ctrust_bpf_header header;
  if (size < sizeof(header)) __builtin_trap();
  std::memcpy(&header, data, sizeof(header));
  if (header.version != CTRUST_BPF_ABI_VERSION || header.size != size) __builtin_trap();
  if (decoded->ktime_ns != header.ktime_ns) __builtin_trap();
  switch (decoded->kind) {
    case ctrust::events::ObservedKind::kExec:
      if (header.kind != CTRUST_BPF_EVENT_EXEC) __builtin_trap();
      check_exec(*decoded, data, size);
      break;
    case ctrust::events::ObservedKind::kNamespace:
      if (header.kind != CTRUST_BPF_EVENT_NAMESPACE) __builtin_trap();
      check_namespace(*decoded, data, size);
      break;
    case ctrust::events::ObservedKind::kMap:
      if (header.kind != CTRUST_BPF_EVENT_MAP) __builtin_trap();
      check_map(*decoded, data, size);
      break;
  }
  return 0;
}
