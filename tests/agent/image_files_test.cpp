// ImageFiles (agent/image_files.h) against real overlay mounts and real read leases: the
// image digest of a root computed through the cache must equal the one computed without
// it, on every start, whatever was written to the layers in between; files are hashed once
// while nothing writes them; what cannot be vouched for (a copied-up file, layers on two
// filesystems) is hashed every time. Mounting needs root (a privileged test).
//
// Its main() is tests/support/lease_signal_main.cpp: the lease signal must be blocked
// before any thread starts.
#include "agent/image_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "image/manifest.h"
#include "support/temp_dir.h"
#include "util/file.h"

namespace ctrust::agent {
namespace {

namespace fs = std::filesystem;

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

std::string mountinfo() {
  auto bytes = read_file("/proc/self/mountinfo", std::size_t{16} << 20);
  if (!bytes) return "";
  return std::string(reinterpret_cast<const char*>(bytes->data()), bytes->size());
}

struct Digests {
  std::string text;  // the manifest
  std::uint64_t hits = 0, hashed = 0, uncached = 0;
  std::string why;
  bool overlay = false;
};

class ImageFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting an overlay needs root";
    auto cache = DigestCache::create(64, 64);
    ASSERT_TRUE(cache) << cache.error().message();
    cache_.emplace(std::move(*cache));
    cache_->drain();  // breaks left over from an earlier test
    // The agent drains lease breaks on its event thread; so does this one.
    drainer_ = std::thread([this] {
      while (!stop_) {
        pollfd p{cache_->signal_fd(), POLLIN, 0};
        if (::poll(&p, 1, 50) > 0) cache_->drain();
      }
    });
    for (const char* d : {"lower1", "lower2", "upper", "work", "merged"}) {
      fs::create_directories(temp_.file(d));
    }
    write_text(temp_.file("lower2/bin/tool"), std::string(10000, 't'));
    write_text(temp_.file("lower2/etc/config"), "from lower2\n");
    write_text(temp_.file("lower1/etc/config"), "from lower1, over lower2\n");
    write_text(temp_.file("lower1/lib/libx.so"), std::string(70000, 'x'));
    write_text(temp_.file("upper/etc/hostname"), "made by the runtime\n");
    fs::create_symlink("tool", temp_.file("lower2/bin/alias"));
  }
  void TearDown() override {
    stop_ = true;
    if (drainer_.joinable()) drainer_.join();
    for (const auto& m : mounted_) ::umount2(m.c_str(), MNT_DETACH);
  }

  void mount_overlay(const std::string& lowers) {
    std::string merged = temp_.file("merged");
    std::string options = "lowerdir=" + lowers + ",upperdir=" + temp_.file("upper") +
                          ",workdir=" + temp_.file("work");
    ASSERT_EQ(::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()), 0)
        << std::strerror(errno) << " " << options;
    mounted_.push_back(merged);
  }
  void mount_default() { mount_overlay(temp_.file("lower1") + ":" + temp_.file("lower2")); }

  // The manifest of `root` as the agent computes it at a start (a new ImageFiles each time).
  Digests through_cache(const std::string& root) {
    Digests d;
    ImageFiles files = ImageFiles::open(root, mountinfo(), &*cache_);
    image::ManifestOptions mo;
    mo.fsverity_of = [&files](int fd, const std::string& path, const struct stat& st) {
      return files.fsverity(fd, path, st);
    };
    auto m = image::manifest_from_directory(root, mo);
    EXPECT_TRUE(m) << m.error().message();
    if (m) d.text = m->text();
    d.hits = files.hits();
    d.hashed = files.hashed();
    d.uncached = files.uncached();
    d.why = files.why();
    d.overlay = files.overlay();
    return d;
  }
  static std::string without_cache(const std::string& root) {
    auto m = image::manifest_from_directory(root, {});
    EXPECT_TRUE(m) << m.error().message();
    return m ? m->text() : "";
  }

  testing::TempDir temp_;
  std::optional<DigestCache> cache_;
  std::thread drainer_;
  std::atomic<bool> stop_{false};
  std::vector<std::string> mounted_;
};

TEST_F(ImageFilesTest, AnOverlaysLayerFilesAreHashedOnceAndGiveTheSameDigest) {
  mount_default();
  std::string root = temp_.file("merged");
  Digests first = through_cache(root);
  EXPECT_TRUE(first.overlay);
  EXPECT_EQ(first.why, "");
  EXPECT_EQ(first.text, without_cache(root));
  EXPECT_EQ(first.hits, 0U);
  EXPECT_EQ(first.hashed, 4U);  // tool, config (lower1's), libx.so, hostname (upper's)
  EXPECT_EQ(first.uncached, 0U);
  EXPECT_NE(first.text.find("/etc/config f"), std::string::npos);

  Digests second = through_cache(root);
  EXPECT_EQ(second.text, first.text);
  EXPECT_EQ(second.hits, 4U);
  EXPECT_EQ(second.hashed, 0U);
  EXPECT_EQ(cache_->stats().image_entries, 4U);

  // Another overlay of the same lower layers (the next container of the image) hits too.
  ::umount2(root.c_str(), MNT_DETACH);
  mounted_.clear();
  fs::remove_all(temp_.file("upper"));
  fs::create_directories(temp_.file("upper"));
  mount_default();
  Digests other = through_cache(root);
  EXPECT_EQ(other.text, without_cache(root));
  EXPECT_EQ(other.hits, 3U);  // the lower files; hostname is gone with the old upper
}

TEST_F(ImageFilesTest, ALayerFileWrittenOnTheHostIsHashedAgain) {
  mount_default();
  std::string root = temp_.file("merged");
  Digests before = through_cache(root);
  ASSERT_EQ(before.hashed, 4U);
  // Rewritten in place through its layer's path (the lease breaks; the drainer lets the
  // writer go on).
  {
    UniqueFd w(::open(temp_.file("lower2/bin/tool").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(w.valid()) << std::strerror(errno);
    ASSERT_EQ(::pwrite(w.get(), "EVIL", 4, 100), 4);
  }
  Digests after = through_cache(root);
  EXPECT_EQ(after.text, without_cache(root));
  EXPECT_NE(after.text, before.text);
  EXPECT_EQ(after.hashed, 1U);
  EXPECT_EQ(after.hits, 3U);
}

TEST_F(ImageFilesTest, AFileWrittenThroughTheMountIsNeverTakenFromTheCache) {
  mount_default();
  std::string root = temp_.file("merged");
  Digests before = through_cache(root);
  // Copied up: the overlay file keeps the lower file's inode number, its bytes are now the
  // upper file's, which is not what was cached: hashed every time from then on.
  {
    std::ofstream out(root + "/lib/libx.so", std::ios::binary | std::ios::app);
    out << "appended in the container";
  }
  for (int round = 0; round < 2; ++round) {
    Digests after = through_cache(root);
    EXPECT_EQ(after.text, without_cache(root));
    EXPECT_NE(after.text, before.text);
    EXPECT_EQ(after.uncached, 1U) << "round " << round;
    EXPECT_EQ(after.hits, 3U) << "round " << round;
  }
}

TEST_F(ImageFilesTest, LayersOnTwoFilesystemsAreNotCached) {
  std::string t = temp_.file("tmpfs");
  fs::create_directories(t);
  ASSERT_EQ(::mount("tmpfs", t.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  mounted_.push_back(t);
  write_text(t + "/on-tmpfs", "another filesystem\n");
  mount_overlay(temp_.file("lower1") + ":" + t);
  std::reverse(mounted_.begin(), mounted_.end());  // the overlay goes before the tmpfs
  std::string root = temp_.file("merged");
  for (int round = 0; round < 2; ++round) {
    Digests d = through_cache(root);
    EXPECT_EQ(d.text, without_cache(root));
    EXPECT_NE(d.why.find("several filesystems"), std::string::npos) << d.why;
    EXPECT_EQ(d.hits + d.hashed, 0U);
    EXPECT_EQ(d.uncached, 4U);  // config, libx.so, hostname, on-tmpfs
  }
}

TEST_F(ImageFilesTest, APlainDirectoryIsCachedByItsOwnFiles) {
  std::string root = temp_.file("lower2");
  Digests first = through_cache(root);
  EXPECT_FALSE(first.overlay);
  EXPECT_EQ(first.why, "");
  EXPECT_EQ(first.hashed, 2U);
  Digests second = through_cache(root);
  EXPECT_EQ(second.hits, 2U);
  EXPECT_EQ(second.text, first.text);
  write_text(root + "/etc/config", "changed\n");  // O_TRUNC: the lease breaks
  Digests third = through_cache(root);
  EXPECT_EQ(third.text, without_cache(root));
  EXPECT_NE(third.text, first.text);
  EXPECT_EQ(third.hits, 1U);
  EXPECT_EQ(third.hashed, 1U);
}

TEST_F(ImageFilesTest, AMountInsideTheRootIsNotCached) {
  // A tmpfs mounted on a directory of the root: its files are another filesystem's, whose
  // inode numbers could equal a layer file's.
  std::string root = temp_.file("lower2");
  std::string inner = root + "/etc";
  ASSERT_EQ(::mount("tmpfs", inner.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  mounted_.push_back(inner);
  write_text(inner + "/on-tmpfs", "another mount\n");
  for (int round = 0; round < 2; ++round) {
    Digests d = through_cache(root);
    EXPECT_EQ(d.text, without_cache(root));
    EXPECT_EQ(d.uncached, 1U) << "round " << round;         // on-tmpfs
    EXPECT_EQ(d.hits + d.hashed, 1U) << "round " << round;  // bin/tool
  }
}

TEST_F(ImageFilesTest, NoCacheMeansEveryFileIsHashed) {
  mount_default();
  std::string root = temp_.file("merged");
  ImageFiles files = ImageFiles::open(root, mountinfo(), nullptr);
  EXPECT_NE(files.why(), "");
  image::ManifestOptions mo;
  mo.fsverity_of = [&files](int fd, const std::string& path, const struct stat& st) {
    return files.fsverity(fd, path, st);
  };
  auto m = image::manifest_from_directory(root, mo);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text(), without_cache(root));
  EXPECT_EQ(files.uncached(), 4U);
  // A cache with no room for images (enforcement.image_cache_entries = 0) takes no lease.
  auto roomless = DigestCache::create(8, 0);
  ASSERT_TRUE(roomless);
  ImageFiles none = ImageFiles::open(root, mountinfo(), &*roomless);
  EXPECT_NE(none.why().find("image_cache_entries = 0"), std::string::npos) << none.why();
  mo.fsverity_of = [&none](int fd, const std::string& path, const struct stat& st) {
    return none.fsverity(fd, path, st);
  };
  m = image::manifest_from_directory(root, mo);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text(), without_cache(root));
  EXPECT_EQ(none.uncached(), 4U);
  EXPECT_EQ(none.hashed() + none.hits(), 0U);
}

TEST_F(ImageFilesTest, FilesOfARemovedImageAreLetGo) {
  std::string root = temp_.file("lower2");
  through_cache(root);
  ASSERT_EQ(cache_->stats().image_entries, 2U);
  EXPECT_EQ(cache_->drop_unlinked_images(), 0U);
  fs::remove(root + "/bin/tool");
  EXPECT_EQ(cache_->drop_unlinked_images(), 1U);
  EXPECT_EQ(cache_->stats().image_entries, 1U);
}

TEST(OverlayLayers, TopmostFirstWithEscapesUndone) {
  MountInfo m;
  m.fstype = "overlay";
  // As this kernel shows lowerdir=/l1:/l\:2:/l\,3 (octal escapes of '\' and ',').
  m.super_options =
      "rw,lowerdir=/tmp/l1:/tmp/l\\134:2:/tmp/l\\134\\0543,upperdir=/tmp/up,workdir=/tmp/wk";
  auto layers = overlay_layers(m);
  ASSERT_TRUE(layers) << layers.error().message();
  EXPECT_EQ(*layers, (std::vector<std::string>{"/tmp/up", "/tmp/l1", "/tmp/l:2", "/tmp/l,3"}));

  m.super_options = "ro,lowerdir=/a:/b";  // no upper: a read-only overlay
  layers = overlay_layers(m);
  ASSERT_TRUE(layers);
  EXPECT_EQ(*layers, (std::vector<std::string>{"/a", "/b"}));

  m.super_options = "rw,lowerdir=/a::/data,upperdir=/u";  // data-only layers
  EXPECT_FALSE(overlay_layers(m));
  m.super_options = "rw,upperdir=/u";
  EXPECT_FALSE(overlay_layers(m));
  m.fstype = "ext4";
  layers = overlay_layers(m);
  ASSERT_TRUE(layers);
  EXPECT_TRUE(layers->empty());
}

}  // namespace
}  // namespace ctrust::agent
