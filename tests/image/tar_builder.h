// TarBuilder: tar layers built in memory with libarchive's writer (pax format), for tests.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace ctrust::testing {

struct TarMember {
  std::string name;
  unsigned type = AE_IFREG;
  unsigned mode = 0644;
  std::string data;      // regular files: the whole content, holes included
  std::string symlink;   // AE_IFLNK target
  std::string hardlink;  // makes this a hard link entry
  long long uid = 0;
  long long gid = 0;
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<std::pair<long long, long long>> sparse;  // data regions (offset, length)
  long long size = -1;                                  // header size; -1: data.size()
};

enum class TarFilter { kNone, kGzip, kZstd };

inline std::string build_tar(const std::vector<TarMember>& members,
                             TarFilter filter = TarFilter::kNone) {
  struct archive* a = ::archive_write_new();
  ::archive_write_set_format_pax(a);
  if (filter == TarFilter::kGzip) ::archive_write_add_filter_gzip(a);
  if (filter == TarFilter::kZstd) ::archive_write_add_filter_zstd(a);
  ::archive_write_set_bytes_in_last_block(a, 1);
  std::string out;
  auto write_cb = [](struct archive*, void* data, const void* buf, size_t n) -> la_ssize_t {
    static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  };
  if (::archive_write_open(a, &out, nullptr, write_cb, nullptr) != ARCHIVE_OK) std::abort();
  for (const TarMember& m : members) {
    struct archive_entry* e = ::archive_entry_new();
    ::archive_entry_set_pathname(e, m.name.c_str());
    ::archive_entry_set_filetype(e, m.type);
    ::archive_entry_set_perm(e, m.mode);
    ::archive_entry_set_uid(e, m.uid);
    ::archive_entry_set_gid(e, m.gid);
    ::archive_entry_set_mtime(e, 1000, 0);
    if (!m.symlink.empty()) ::archive_entry_set_symlink(e, m.symlink.c_str());
    if (!m.hardlink.empty()) ::archive_entry_set_hardlink(e, m.hardlink.c_str());
    if (m.type == AE_IFCHR || m.type == AE_IFBLK) {
      ::archive_entry_set_rdevmajor(e, m.rdev_major);
      ::archive_entry_set_rdevminor(e, m.rdev_minor);
    }
    for (const auto& [name, value] : m.xattrs) {
      ::archive_entry_xattr_add_entry(e, name.c_str(), value.data(), value.size());
    }
    for (const auto& [offset, length] : m.sparse) {
      ::archive_entry_sparse_add_entry(e, offset, length);
    }
    bool regular = m.type == AE_IFREG && m.hardlink.empty();
    ::archive_entry_set_size(e, m.size >= 0 ? m.size
                                : regular   ? static_cast<long long>(m.data.size())
                                            : 0);
    if (::archive_write_header(a, e) < ARCHIVE_WARN) {
      std::fprintf(stderr, "build_tar: %s\n", ::archive_error_string(a));
      std::abort();
    }
    if (regular && !m.data.empty()) ::archive_write_data(a, m.data.data(), m.data.size());
    ::archive_entry_free(e);
  }
  ::archive_write_close(a);
  ::archive_write_free(a);
  return out;
}

}  // namespace ctrust::testing
