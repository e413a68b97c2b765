#include "image/oci.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <clocale>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "crypto/fsverity.h"
#include "image/layer.h"
#include "image/tar_builder.h"
#include "support/temp_dir.h"
#include "util/file.h"

namespace ctrust::image {
namespace {

using testing::build_tar;
using testing::TarFilter;
using testing::TarMember;

std::string fsv(std::string_view data) {
  return crypto::fsverity_digest_bytes(as_bytes(data), {})->hex();
}

TarMember node(std::string name, unsigned type, unsigned mode) {
  TarMember m;
  m.name = std::move(name);
  m.type = type;
  m.mode = mode;
  return m;
}
TarMember dir(std::string name, unsigned mode = 0755) {
  return node(std::move(name), AE_IFDIR, mode);
}
TarMember file(std::string name, std::string data, unsigned mode = 0644) {
  TarMember m = node(std::move(name), AE_IFREG, mode);
  m.data = std::move(data);
  return m;
}
TarMember symlink(std::string name, std::string target) {
  TarMember m = node(std::move(name), AE_IFLNK, 0777);
  m.symlink = std::move(target);
  return m;
}
TarMember hardlink(std::string name, std::string target) {
  TarMember m = node(std::move(name), AE_IFREG, 0644);
  m.hardlink = std::move(target);
  return m;
}
TarMember device(std::string name, unsigned type, unsigned mode, unsigned major, unsigned minor) {
  TarMember m = node(std::move(name), type, mode);
  m.rdev_major = major;
  m.rdev_minor = minor;
  return m;
}
TarMember owned(TarMember m, long long uid, long long gid) {
  m.uid = uid;
  m.gid = gid;
  return m;
}
TarMember with_xattrs(TarMember m, std::vector<std::pair<std::string, std::string>> xattrs) {
  m.xattrs = std::move(xattrs);
  return m;
}

Result<Manifest> apply(const std::vector<std::string>& tars, LayerReadOptions options = {}) {
  LayerTree tree;
  for (std::size_t i = 0; i < tars.size(); ++i) {
    CTRUST_ASSIGN_OR_RETURN(Layer layer, read_layer(as_bytes(tars[i]), options));
    CTRUST_TRY(tree.apply(std::move(layer)));
  }
  return std::move(tree).manifest();
}

// The manifest lines without the header, for compact expectations.
std::string body(const Manifest& m) {
  std::string t = m.text();
  return t.substr(t.find('\n') + 1);
}

std::string error_of(const Result<Manifest>& r) {
  return r.ok() ? std::string("(no error)") : r.error().message();
}

#define EXPECT_ERROR(result, text) \
  EXPECT_NE(error_of(result).find(text), std::string::npos) << error_of(result)

TEST(OciLayer, OneLayerEveryType) {
  std::string tar = build_tar({
      dir("./"),
      dir("./bin"),
      file("./bin/tool", "tool contents", 04755),
      symlink("./bin/sh", "tool"),
      device("dev/null", AE_IFCHR, 0666, 1, 3),
      owned(device("dev/sda", AE_IFBLK, 0660, 8, 0), 0, 6),
      owned(node("run/fifo", AE_IFIFO, 0600), 1000, 1000),
  });
  auto m = apply({tar});
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(body(*m),
            "/ d 0755 0 0\n"
            "/bin d 0755 0 0\n"
            "/bin/sh l 0777 0 0 target=tool\n"
            "/bin/tool f 4755 0 0 size=13 fsverity=sha256:" +
                fsv("tool contents") +
                "\n"
                "/dev d 0755 0 0\n"
                "/dev/null c 0666 0 0 rdev=1:3\n"
                "/dev/sda b 0660 0 6 rdev=8:0\n"
                "/run d 0755 0 0\n"
                "/run/fifo p 0600 1000 1000\n");
  EXPECT_EQ(m->total_bytes, 13u);
}

TEST(OciLayer, RootMetadataComesFromTheRootMember) {
  auto m = apply({build_tar({owned(dir("./", 0700), 5, 0)})});
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(body(*m), "/ d 0700 5 0\n");
  m = apply({build_tar({file("x", "")})});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->entries.front().path, "/");
  EXPECT_EQ(m->entries.front().mode, 0755u);
  EXPECT_ERROR(apply({build_tar({file(".", "")})}), "the root must be a directory");
  EXPECT_ERROR(apply({build_tar({symlink("./", "x")})}), "the root must be a directory");
}

TEST(OciLayer, CompressionsGiveTheSameManifest) {
  std::vector<TarMember> members = {dir("etc"), file("etc/motd", std::string(100000, 'm'))};
  auto plain = apply({build_tar(members)});
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  for (TarFilter f : {TarFilter::kGzip, TarFilter::kZstd}) {
    auto m = apply({build_tar(members, f)});
    ASSERT_TRUE(m.ok()) << m.error().message();
    EXPECT_EQ(m->text(), plain->text());
  }
  LayerReadOptions declared;
  declared.compression = LayerCompression::kZstd;
  EXPECT_ERROR(apply({build_tar(members, TarFilter::kGzip)}, declared),
               "not the one its media type declares");
  declared.compression = LayerCompression::kNone;
  EXPECT_ERROR(apply({build_tar(members, TarFilter::kGzip)}, declared),
               "compression (gzip) is not the one");
  EXPECT_TRUE(apply({build_tar(members)}, declared).ok());
}

TEST(OciLayer, PipelineAndInlineHashingAgree) {
  std::vector<TarMember> members;
  for (int i = 0; i < 300; ++i) {
    members.push_back(
        file("f" + std::to_string(i), std::string(i * 997 % 70000, char('a' + i % 26))));
  }
  members.push_back(file("big", std::string(3'500'000, 'b')));
  members.push_back(file("empty", ""));
  std::string tar = build_tar(members);
  LayerReadOptions inline_opts;
  inline_opts.pipeline = false;
  auto a = apply({tar});
  auto b = apply({tar}, inline_opts);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->text(), b->text());
  for (const ManifestEntry& e : a->entries) {
    if (e.path == "/big") {
      EXPECT_EQ(e.fsverity.hex(), fsv(std::string(3'500'000, 'b')));
    }
  }
}

TEST(OciLayer, WhiteoutsRemoveLowerLayerPathsAndNeverAppear) {
  std::string lower = build_tar({dir("a"), file("a/x", "x"), file("a/y", "y"), dir("b"),
                                 file("b/deep", "d"), file("c", "c")});
  std::string upper = build_tar({file("a/.wh.x", ""), file(".wh.b", ""), file(".wh.nothing", ""),
                                 file("c", "new c"), file(".wh.c", "")});
  auto m = apply({lower, upper});
  ASSERT_TRUE(m.ok()) << m.error().message();
  // c was written again by the whiteout's own layer: a whiteout hides lower layers only.
  EXPECT_EQ(body(*m),
            "/ d 0755 0 0\n/a d 0755 0 0\n/a/y f 0644 0 0 size=1 fsverity=sha256:" + fsv("y") +
                "\n/c f 0644 0 0 size=5 fsverity=sha256:" + fsv("new c") + "\n");
}

TEST(OciLayer, OpaqueDirectoriesKeepOnlyTheirOwnLayer) {
  std::string lower = build_tar(
      {dir("d"), file("d/x", "x"), dir("d/sub"), file("d/sub/y", "y"), file("keep", "k")});
  // The marker before and after the layer's own entries gives the same result.
  for (bool marker_first : {true, false}) {
    std::vector<TarMember> members = {file("d/z", "z"), file("d/sub/w", "w")};
    auto it = marker_first ? members.begin() : members.end();
    members.insert(it, file("d/.wh..wh..opq", ""));
    auto m = apply({lower, build_tar(members)});
    ASSERT_TRUE(m.ok()) << m.error().message();
    std::string paths;
    for (const auto& e : m->entries) paths += e.path + " ";
    EXPECT_EQ(paths, "/ /d /d/sub /d/sub/w /d/z /keep ") << marker_first;
  }
}

TEST(OciLayer, LaterEntriesReplaceEarlierOnes) {
  std::string lower = build_tar({dir("d", 0700), file("d/x", "x"), dir("e"), file("e/x", "x"),
                                 file("f", "f"), file("g", "g")});
  std::string upper = build_tar({
      owned(dir("d", 0750), 7, 0),              // dir over dir: children stay
      file("e", "now a file"),                  // file over dir: subtree goes
      symlink("f", "g"),                        // symlink over file
      file("g", "first"), file("g", "second"),  // same layer: last wins
  });
  auto m = apply({lower, upper});
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(body(*m),
            "/ d 0755 0 0\n/d d 0750 7 0\n/d/x f 0644 0 0 size=1 fsverity=sha256:" + fsv("x") +
                "\n/e f 0644 0 0 size=10 fsverity=sha256:" + fsv("now a file") +
                "\n/f l 0777 0 0 target=g\n" +
                "/g f 0644 0 0 size=6 fsverity=sha256:" + fsv("second") + "\n");
}

TEST(OciLayer, HardLinksCopyTheirTarget) {
  std::string lower =
      build_tar({owned(file("bin/tool", "T", 0750), 3, 0), symlink("lnk", "anything")});
  std::string upper = build_tar({hardlink("usr/tool", "bin/tool"), file("new", "N", 0600),
                                 hardlink("./new2", "./new"), hardlink("lnk2", "lnk")});
  auto m = apply({lower, upper});
  ASSERT_TRUE(m.ok()) << m.error().message();
  std::string t = body(*m);
  std::string tool = " f 0750 3 0 size=1 fsverity=sha256:" + fsv("T") + "\n";
  EXPECT_NE(t.find("/bin/tool" + tool), std::string::npos) << t;
  EXPECT_NE(t.find("/usr/tool" + tool), std::string::npos) << t;
  EXPECT_NE(t.find("/new2 f 0600 0 0 size=1 "), std::string::npos) << t;
  EXPECT_NE(t.find("/lnk2 l 0777 0 0 target=anything\n"), std::string::npos) << t;
}

TEST(OciLayer, SparseMembersHashTheirHoles) {
  std::string content(3 * 4096 + 100, '\0');
  content.replace(5000, 3, "abc");
  content.replace(content.size() - 10, 10, "0123456789");
  TarMember m = file("sparse", content);
  m.sparse = {{4096, 4096}, {8192 + 4096 - 4096, 4096}};
  // libarchive writes the data regions given; the reader must recreate the holes.
  m.sparse = {{4096, 4096}, {12288, 100}};
  auto r = apply({build_tar({m})});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->entries.back().size, content.size());
  EXPECT_EQ(r->entries.back().fsverity.hex(), fsv(content));
}

TEST(OciLayer, OddNamesLongPathsAndXattrs) {
  std::string odd = std::string("odd\xff\xfe name\nline", 16);
  std::string path;
  for (int i = 0; i < 30; ++i)
    path += "directory-level-number-" + std::to_string(i) + "-" + std::string(150, 'x') + "/";
  ASSERT_GT(path.size(), 4096u);
  std::string cap("\x01\x00\x00\x02\x01\x00\x00\x00", 8);
  std::vector<TarMember> members = {
      file(odd, "o"), file(path + "leaf", "deep"),
      with_xattrs(file("cap", "c"), {{"security.capability", cap}, {"user.a", "A"}})};
  auto m = apply({build_tar(members)});
  ASSERT_TRUE(m.ok()) << m.error().message();
  std::string t = m->text();
  EXPECT_NE(t.find("/odd\\xff\\xfe\\x20name\\x0aline f"), std::string::npos) << t;
  EXPECT_NE(t.find("/cap f 0644 0 0 size=1 fsverity=sha256:" + fsv("c") +
                   " xattr.security.capability=0100000201000000\n"),
            std::string::npos);
  EXPECT_NE(t.find("/" + path + "leaf f"), std::string::npos);
  LayerReadOptions with_user;
  with_user.xattrs = {"user.a"};
  m = apply({build_tar(members)}, with_user);
  ASSERT_TRUE(m.ok());
  EXPECT_NE(m->text().find(" xattr.security.capability=0100000201000000 xattr.user.a=41\n"),
            std::string::npos);
}

// A 512-byte ustar header (mode 0644, owner 0:0) with its checksum.
std::string ustar_header(std::string_view name, std::size_t size, char type) {
  std::string h(512, '\0');
  h.replace(0, name.size(), name);
  h.replace(100, 8, std::string("0000644\0", 8));
  h.replace(108, 8, std::string("0000000\0", 8));
  h.replace(116, 8, std::string("0000000\0", 8));
  char num[16];
  std::snprintf(num, sizeof(num), "%011zo", size);
  h.replace(124, 12, std::string(num, 11) + '\0');
  h.replace(136, 12, std::string("00000000000\0", 12));
  h[156] = type;
  h.replace(257, 8,
            std::string("ustar\0"
                        "00",
                        8));
  h.replace(148, 8, "        ");
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(num, sizeof(num), "%06o", sum);
  h.replace(148, 8, std::string(num, 6) + '\0' + ' ');
  return h;
}

std::string padded(std::string s) { return s + std::string((512 - s.size() % 512) % 512, '\0'); }

// One member named by a PAX path record holding raw bytes, as Go's archive/tar writes it.
std::string go_pax_member(std::string_view path, std::string_view data) {
  std::string body = " path=" + std::string(path) + "\n";
  std::size_t n = body.size() + 1;
  while (std::to_string(n).size() + body.size() != n) ++n;
  std::string record = std::to_string(n) + body;
  return ustar_header("PaxHeaders/x", record.size(), 'x') + padded(record) +
         ustar_header("placeholder", data.size(), '0') + padded(std::string(data));
}

// Under a UTF-8 locale libarchive would turn the NFD name into NFC and replace invalid
// bytes; the reader must keep the raw bytes whatever the process's locale is.
TEST(OciLayer, PaxNamesAreRawBytesUnderAnyLocale) {
  std::string nfd = "e\xcc\x81";
  std::string bad = "\xff\xfe";
  std::string tar = go_pax_member(nfd, "a") + go_pax_member(bad, "b") + std::string(1024, '\0');
  const char* old = std::setlocale(LC_ALL, nullptr);
  std::string saved = old != nullptr ? old : "C";
  bool utf8 = std::setlocale(LC_ALL, "C.UTF-8") != nullptr;
  auto m = apply({tar});
  std::setlocale(LC_ALL, saved.c_str());
  ASSERT_TRUE(m.ok()) << m.error().message();
  ASSERT_EQ(m->entries.size(), 3u) << utf8;
  EXPECT_EQ(m->entries[1].path, "/" + nfd);
  EXPECT_EQ(m->entries[2].path, "/" + bad);
}

TEST(OciLayer, MemberNamesAreNormalisedOrRejected) {
  LayerLimits l;
  EXPECT_EQ(*normalize_member_path("./a//b/./c/", l), "/a/b/c");
  EXPECT_EQ(*normalize_member_path("./", l), "/");
  EXPECT_EQ(*normalize_member_path("/", l), "/");
  EXPECT_EQ(*normalize_member_path("a..b/..c", l), "/a..b/..c");
  EXPECT_FALSE(normalize_member_path("", l).ok());
  EXPECT_FALSE(normalize_member_path(std::string_view("a\0b", 3), l).ok());
  EXPECT_FALSE(normalize_member_path("../x", l).ok());
  EXPECT_FALSE(normalize_member_path("a/../../x", l).ok());
  EXPECT_FALSE(normalize_member_path("a/..", l).ok());
  EXPECT_FALSE(normalize_member_path("/etc/passwd", l).ok());
  EXPECT_FALSE(normalize_member_path(std::string(256, 'n'), l).ok());
}

TEST(OciLayer, HostileMembersAreRejected) {
  EXPECT_ERROR(apply({build_tar({file("../x", "")})}), "'..'");
  EXPECT_ERROR(apply({build_tar({file("a/../../x", "")})}), "'..'");
  EXPECT_ERROR(apply({build_tar({file("/etc/passwd", "")})}), "absolute member name");
  // A symlink from an earlier layer, or earlier in the same layer, is never written through.
  std::string link = build_tar({symlink("lib", "../../etc")});
  EXPECT_ERROR(apply({link, build_tar({file("lib/passwd", "x")})}), "through the symlink /lib");
  EXPECT_ERROR(apply({build_tar({symlink("lib", "/etc"), file("lib/passwd", "x")})}),
               "through the symlink /lib");
  EXPECT_ERROR(apply({link, build_tar({file("lib/.wh.passwd", "")})}), "through the symlink");
  EXPECT_ERROR(apply({link, build_tar({hardlink("x", "lib/passwd")})}), "through the symlink");
  EXPECT_ERROR(apply({build_tar({file("f", "x"), file("f/g", "y")})}), "not a directory");
  // Hard links must name an existing non-directory inside the image.
  EXPECT_ERROR(apply({build_tar({hardlink("x", "../etc/shadow")})}), "'..'");
  EXPECT_ERROR(apply({build_tar({hardlink("x", "/etc/shadow")})}), "absolute");
  EXPECT_ERROR(apply({build_tar({hardlink("x", "missing")})}), "does not exist");
  EXPECT_ERROR(apply({build_tar({dir("d"), hardlink("x", "d")})}), "to the directory");
  EXPECT_ERROR(apply({build_tar({hardlink("x", "later"), file("later", "")})}), "does not exist");
  EXPECT_ERROR(apply({build_tar({file("a/.wh..wh.plnk", "")})}), "unsupported whiteout");
  EXPECT_ERROR(apply({build_tar({file(".wh.", "")})}), "whiteout without a valid name");
  EXPECT_ERROR(apply({build_tar({file(".wh.d/x", "")})}), "a whiteout name used as a directory");
}

TEST(OciLayer, LimitsAreEnforced) {
  LayerReadOptions small;
  small.limits.max_file_size = 1000;
  EXPECT_ERROR(apply({build_tar({file("big", std::string(1001, 'b'))})}, small), "larger than");
  // A header that claims a huge size (base-256, 2^50 bytes) with no data behind it: refused
  // before any data is read.
  std::string huge = build_tar({file("huge", "")});
  ASSERT_EQ(huge.substr(0, 4), "huge");
  std::string size(12, '\0');
  size[0] = static_cast<char>(0x80);
  size[5] = 0x04;  // 2^50 in a big-endian 11-byte field
  huge.replace(124, 12, size);
  huge.replace(148, 8, "        ");
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += static_cast<unsigned char>(huge[i]);
  char chk[8];
  std::snprintf(chk, sizeof(chk), "%06o", sum);
  huge.replace(148, 7, std::string(chk, 6) + '\0');
  EXPECT_ERROR(apply({huge}), "file larger than 68719476736 bytes");
  small = {};
  small.limits.max_entries = 3;
  EXPECT_ERROR(
      apply({build_tar({file("a", ""), file("b", ""), file("c", ""), file("d", "")})}, small),
      "more than 3 members");
  small = {};
  small.limits.max_xattr_bytes = 10;
  EXPECT_ERROR(apply({build_tar({with_xattrs(file("x", ""), {{"user.a", "0123456789"}})})}, small),
               "extended attributes larger");
  EXPECT_ERROR(apply({build_tar({symlink("l", std::string(5000, 't'))})}), "symlink target longer");
}

TEST(OciLayer, TruncatedAndGarbageLayersAreErrors) {
  std::string tar = build_tar({file("a", std::string(10000, 'a'))});
  EXPECT_FALSE(apply({tar.substr(0, 3000)}).ok());
  EXPECT_FALSE(apply({std::string(2000, 'z')}).ok());
  std::string gz = build_tar({file("a", std::string(10000, 'a'))}, TarFilter::kGzip);
  EXPECT_FALSE(apply({gz.substr(0, gz.size() / 2)}).ok());
}

// An OCI layout written by hand, with every blob's digest computed here.
class OciLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir((dir_ + "/blobs").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dir_ + "/blobs/sha256").c_str(), 0755), 0);
    write("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  void write(const std::string& rel, std::string_view data) {
    ASSERT_TRUE(write_file_atomic(dir_ + "/" + rel, as_bytes(data), 0644).ok());
  }
  nlohmann::json blob(std::string_view data, std::string media_type) {
    std::string hex = crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(data))->hex();
    write("blobs/sha256/" + hex, data);
    return {{"mediaType", media_type}, {"digest", "sha256:" + hex}, {"size", data.size()}};
  }
  // An image of `layers` (plain tars); returns the manifest's descriptor.
  nlohmann::json image(const std::vector<std::string>& layers,
                       std::string type = "application/vnd.oci.image.layer.v1.tar") {
    nlohmann::json m = {{"schemaVersion", 2},
                        {"mediaType", kOciManifestType},
                        {"config", blob("{}", "application/vnd.oci.image.config.v1+json")},
                        {"layers", nlohmann::json::array()}};
    for (const auto& l : layers) m["layers"].push_back(blob(l, type));
    return blob(m.dump(), std::string(kOciManifestType));
  }
  void index(const std::vector<nlohmann::json>& manifests) {
    write("index.json", nlohmann::json({{"schemaVersion", 2}, {"manifests", manifests}}).dump());
  }
  static nlohmann::json tagged(nlohmann::json d, const std::string& tag) {
    d["annotations"] = {{std::string(kOciRefName), tag}};
    return d;
  }
  Result<Manifest> digest(std::optional<std::string> tag = std::nullopt) {
    return manifest_from_oci_layout(dir_, std::move(tag), {});
  }

  testing::TempDir tmp_;
  std::string dir_ = tmp_.path();
  std::string base_ = build_tar({dir("etc"), file("etc/a", "a"), file("etc/b", "b")});
  std::string upper_ = build_tar({file("etc/.wh.a", ""), file("etc/c", "c")});
};

TEST_F(OciLayoutTest, TaggedImagesAndLayers) {
  index({tagged(image({base_, upper_}), "v1"), tagged(image({base_}), "v0")});
  auto m = digest("v1");
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto want = apply({base_, upper_});
  EXPECT_EQ(m->text(), want->text());
  EXPECT_ERROR(digest("v2"), "no image tagged v2");
  EXPECT_ERROR(digest("v2"), "tags: v1, v0");
  EXPECT_ERROR(digest(), "holds 2 images; name one as oci:DIR:TAG (tags: v1, v0)");
}

TEST_F(OciLayoutTest, OneImageNeedsNoTagAndCompressedLayersWork) {
  index({image({build_tar({file("x", "x")}, TarFilter::kZstd)},
               "application/vnd.oci.image.layer.v1.tar+zstd")});
  auto m = digest();
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->entries.size(), 2u);
}

TEST_F(OciLayoutTest, NestedIndexesPickLinuxAmd64) {
  nlohmann::json amd = image({base_});
  amd["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  nlohmann::json arm = image({upper_});
  arm["platform"] = {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}};
  nlohmann::json nested = {{"schemaVersion", 2}, {"manifests", {arm, amd}}};
  index({blob(nested.dump(), std::string(kOciIndexType))});
  auto m = digest();
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->text(), apply({base_})->text());
  nlohmann::json only_arm = {{"schemaVersion", 2}, {"manifests", {arm, arm}}};
  index({blob(only_arm.dump(), std::string(kOciIndexType))});
  EXPECT_ERROR(digest(), "none for linux/amd64 (platforms: linux/arm64/v8, linux/arm64/v8)");
}

TEST_F(OciLayoutTest, TamperedBlobsAreNamed) {
  nlohmann::json d = image({base_});
  index({d});
  Bytes raw =
      *read_file(dir_ + "/blobs/sha256/" + d["digest"].get<std::string>().substr(7), 1 << 20);
  auto m = *parse_oci_manifest(std::string(raw.begin(), raw.end()));
  std::string layer = dir_ + "/blobs/sha256/" + m.layers[0].digest.hex();
  std::string tampered = base_;
  tampered[600] ^= 1;
  write("blobs/sha256/" + m.layers[0].digest.hex(), tampered);
  EXPECT_ERROR(digest(), "blob " + m.layers[0].digest_string() + " does not match its digest");
  write("blobs/sha256/" + m.layers[0].digest.hex(), base_ + "x");
  EXPECT_ERROR(digest(), "has " + std::to_string(base_.size() + 1) + " bytes, its descriptor says");
  write("blobs/sha256/" + m.config.digest.hex(), "[]");
  write("blobs/sha256/" + m.layers[0].digest.hex(), base_);
  EXPECT_ERROR(digest(), "blob " + m.config.digest_string() + " does not match its digest");
  ASSERT_EQ(::unlink((dir_ + "/blobs/sha256/" + m.config.digest.hex()).c_str()), 0);
  ASSERT_EQ(::symlink(layer.c_str(), (dir_ + "/blobs/sha256/" + m.config.digest.hex()).c_str()), 0);
  EXPECT_ERROR(digest(), "cannot open blobs/sha256/" + m.config.digest.hex());
}

TEST_F(OciLayoutTest, MalformedLayoutsAreRejected) {
  index({image({base_})});
  write("oci-layout", R"({"imageLayoutVersion":"2.0.0"})");
  EXPECT_ERROR(digest(), "imageLayoutVersion 2.0.0, not 1.0.0");
  write("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  write("index.json", "{\"schemaVersion\": 2, \"manifests\": [");
  EXPECT_ERROR(digest(), "index.json: the image index is not valid JSON");
  write("index.json", R"({"schemaVersion": 2, "manifests": {}})");
  EXPECT_ERROR(digest(), "has no \"manifests\" array");
  // Two "manifests" keys: other tools may read the first, nlohmann alone the last.
  write("index.json", R"({"schemaVersion": 2, "manifests": [], "manifests": []})");
  EXPECT_ERROR(digest(), "duplicate key \"manifests\"");
  write("index.json", "{\"schemaVersion\": 2, \"x\": " + std::string(100, '[') +
                          std::string(100, ']') + ", \"manifests\": []}");
  EXPECT_ERROR(digest(), "nesting deeper than 64 levels");
  write("index.json", R"({"schemaVersion": 2, "manifests": [{"mediaType": 7}]})");
  EXPECT_ERROR(digest(), "\"mediaType\" is not a string");
  const char* bad_digests[] = {"sha256:../../../../etc/passwd", "md5:abcd", "sha256:ABCDEF",
                               "sha256:", "sha256:0123"};
  for (const char* bad : bad_digests) {
    nlohmann::json d = {{"mediaType", kOciManifestType}, {"digest", bad}, {"size", 10}};
    index({d});
    EXPECT_ERROR(digest(), "digest") << bad;
    EXPECT_FALSE(digest().ok()) << bad;
  }
  nlohmann::json neg = image({base_});
  neg["size"] = -1;
  index({neg});
  EXPECT_ERROR(digest(), "no valid \"size\"");
  index({image({base_}, "application/vnd.oci.image.layer.v1.tar+bzip2")});
  EXPECT_ERROR(digest(),
               "unsupported layer media type application/vnd.oci.image.layer.v1.tar+bzip2");
  index({image({base_}, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")});
  EXPECT_ERROR(digest(), "non-distributable");
  index({image({base_}, "application/vnd.oci.image.layer.v1.tar+gzip")});
  EXPECT_ERROR(digest(), "not the one its media type declares");
  nlohmann::json wrong = blob("{}", "application/vnd.example+json");
  index({wrong});
  EXPECT_ERROR(digest(), "not an image manifest or index");
  ASSERT_EQ(::unlink((dir_ + "/oci-layout").c_str()), 0);
  EXPECT_ERROR(digest(), "cannot open oci-layout");
}

TEST_F(OciLayoutTest, HostileLayerInAValidLayoutIsNamed) {
  index({image({build_tar({symlink("lib", "../../etc")}), build_tar({file("lib/passwd", "x")})})});
  auto m = digest();
  EXPECT_ERROR(m, "layer 1 (sha256:");
  EXPECT_ERROR(m, "through the symlink /lib");
}

TEST(OciParse, DigestsAreStrict) {
  EXPECT_TRUE(parse_oci_digest("sha256:" + std::string(64, 'a')).ok());
  EXPECT_TRUE(parse_oci_digest("sha512:" + std::string(128, '0')).ok());
  EXPECT_FALSE(parse_oci_digest("sha256:" + std::string(63, 'a')).ok());
  EXPECT_FALSE(parse_oci_digest("sha256:" + std::string(64, 'A')).ok());
  EXPECT_FALSE(parse_oci_digest("sha256:" + std::string(62, 'a') + "/.").ok());
  EXPECT_FALSE(parse_oci_digest("sha384:" + std::string(96, 'a')).ok());
  EXPECT_FALSE(parse_oci_digest(std::string(64, 'a')).ok());
}

TEST(OciParse, ManifestsNeedTheirFields) {
  EXPECT_FALSE(parse_oci_manifest("[]").ok());
  EXPECT_FALSE(parse_oci_manifest(R"({"schemaVersion": 1})").ok());
  EXPECT_FALSE(parse_oci_manifest(R"({"schemaVersion": 2, "layers": []})").ok());
  EXPECT_FALSE(parse_oci_manifest(R"({"schemaVersion": 2.5})").ok());
  std::string cfg =
      R"({"mediaType": "x", "digest": "sha256:)" + std::string(64, 'a') + R"(", "size": 2})";
  auto m = parse_oci_manifest(R"({"schemaVersion": 2, "config": )" + cfg + R"(, "layers": [)" +
                              cfg + "]}");
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->layers.size(), 1u);
  EXPECT_FALSE(parse_oci_manifest(R"({"schemaVersion": 2, "config": )" + cfg +
                                  R"(, "layers": [], "mediaType": "application/x"})")
                   .ok());
}

}  // namespace
}  // namespace ctrust::image
