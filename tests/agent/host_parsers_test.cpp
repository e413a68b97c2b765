// The parsers of what the kernel says about a container's process: /proc/PID/mountinfo
// (mount points and options named by the container), /proc/PID/maps and /proc/PID/cgroup. No kernel
// needed: crafted texts, including hostile ones.
#include <gtest/gtest.h>

#include <string>

#include "agent/cgroup.h"
#include "agent/mountinfo.h"
#include "agent/proc_maps.h"

namespace ctrust::agent {
namespace {

constexpr const char* kMountinfo =
    "22 1 0:21 / / rw,relatime - overlay overlay "
    "rw,lowerdir=/l1:/l2,upperdir=/var/lib/c/up\\054per,workdir=/var/lib/c/work\n"
    "23 22 0:5 / /dev rw,nosuid master:1 shared:2 - tmpfs tmpfs rw,size=65536k,mode=755\n"
    "24 22 8:3 /vol/with\\040space /data ro,relatime - ext4 /dev/sda3 rw\n";

TEST(MountinfoTest, ParsesEveryFieldAndUnescapes) {
  auto mounts = parse_mountinfo(kMountinfo);
  ASSERT_TRUE(mounts) << mounts.error().message();
  ASSERT_EQ(mounts->size(), 3U);
  const auto& root = (*mounts)[0];
  EXPECT_EQ(root.mnt_id, 22U);
  EXPECT_EQ(root.parent_id, 1U);
  EXPECT_EQ(root.major, 0U);
  EXPECT_EQ(root.minor, 21U);
  EXPECT_EQ(root.mount_point, "/");
  EXPECT_EQ(root.fstype, "overlay");
  EXPECT_EQ(overlay_upperdir(root), "/var/lib/c/up,per");  // \054 is a comma
  const auto& dev = (*mounts)[1];
  EXPECT_EQ(dev.fstype, "tmpfs");  // optional fields (master:1 shared:2) skipped
  EXPECT_EQ(dev.super_options, "rw,size=65536k,mode=755");
  EXPECT_EQ(overlay_upperdir(dev), "");
  const auto& data = (*mounts)[2];
  EXPECT_EQ(data.root, "/vol/with space");
  EXPECT_EQ(data.major, 8U);
  EXPECT_EQ(data.source, "/dev/sda3");
}

TEST(MountinfoTest, OverlayCommasEscapedWithABackslash) {
  MountInfo m;
  m.fstype = "overlay";
  m.super_options = "rw,lowerdir=/a,upperdir=/u\\,v,workdir=/w";
  EXPECT_EQ(overlay_upperdir(m), "/u,v");
  m.super_options = "rw,lowerdir=/a";
  EXPECT_EQ(overlay_upperdir(m), "");
}

TEST(MountinfoTest, RejectsMalformedLines) {
  EXPECT_TRUE(parse_mountinfo("")->empty());
  EXPECT_FALSE(parse_mountinfo("22 1 0:21 / / rw - overlay\n"));      // short
  EXPECT_FALSE(parse_mountinfo("x 1 0:21 / / rw - overlay o rw\n"));  // id
  EXPECT_FALSE(parse_mountinfo("22 1 021 / / rw - overlay o rw\n"));  // dev
  EXPECT_FALSE(parse_mountinfo("22 1 0:21 / / rw a b c d\n"));        // no " - "
  EXPECT_FALSE(parse_mountinfo("22 1 0:21 / / rw - overlay o rw extra\n"));
  EXPECT_FALSE(parse_mountinfo("22 1 0:99999999999 / / rw - t s o\n"));  // minor overflows
  EXPECT_FALSE(parse_mountinfo("22 1 0:21 / / rw -  overlay o rw\n"));   // empty fstype (fuzz)
  auto e = parse_mountinfo(std::string(kMountinfo) + "garbage\n");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("line 4"), std::string::npos);
}

TEST(ProcMapsTest, ParsesRangeRightsDeviceInodeAndPathsWithSpaces) {
  auto maps = parse_maps(
      "55d0c0a00000-55d0c0a02000 r--p 00000000 08:03 131090                     /bin/true\n"
      "7f1c2d000000-7f1c2d195000 r-xp 00028000 fd:1a 2621 /lib/a dir/libc.so.6\n"
      "7ffd0b000000-7ffd0b021000 rw-p 00000000 00:00 0                          [stack]\n"
      "7f00-7f01 r-xs 00000000 00:01 1055 /memfd:preload (deleted)\n"
      "7f02-7f03 rw-p 00000000 00:00 0\n");
  ASSERT_TRUE(maps) << maps.error().message();
  ASSERT_EQ(maps->size(), 5U);
  EXPECT_FALSE((*maps)[0].exec);
  EXPECT_EQ((*maps)[0].range, "55d0c0a00000-55d0c0a02000");
  EXPECT_EQ((*maps)[0].ino, 131090U);
  EXPECT_EQ((*maps)[0].path, "/bin/true");
  EXPECT_TRUE((*maps)[1].exec);
  EXPECT_EQ((*maps)[1].major, 0xfdU);  // hexadecimal, as the kernel prints them
  EXPECT_EQ((*maps)[1].minor, 0x1aU);
  EXPECT_EQ((*maps)[1].path, "/lib/a dir/libc.so.6");
  EXPECT_EQ((*maps)[3].path, "/memfd:preload (deleted)");
  EXPECT_EQ((*maps)[4].path, "");
}

TEST(ProcMapsTest, RejectsMalformedLines) {
  EXPECT_TRUE(parse_maps("")->empty());
  EXPECT_FALSE(parse_maps("zz-7f01 r-xp 00000000 00:01 1 /x\n"));
  EXPECT_FALSE(parse_maps("7f02-7f01 r-xp 00000000 00:01 1 /x\n"));  // end before start
  EXPECT_FALSE(parse_maps("7f00-7f01 r-x 00000000 00:01 1 /x\n"));
  EXPECT_FALSE(parse_maps("7f00-7f01 r-xp 0000g000 00:01 1 /x\n"));
  EXPECT_FALSE(parse_maps("7f00-7f01 r-xp 00000000 0001 1 /x\n"));
  EXPECT_FALSE(parse_maps("7f00-7f01 r-xp 00000000 00:01 -1 /x\n"));
  EXPECT_FALSE(parse_maps("7f00-7f01 r-xp\n"));
}

TEST(ProcCgroupTest, FindsTheV2Line) {
  auto p = parse_proc_cgroup_v2("9:name=systemd:/c\n4:memory:/x/c\n0::/c1\n");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(*p, "/c1");
  EXPECT_EQ(*parse_proc_cgroup_v2("0::/\n"), "/");
  EXPECT_EQ(*parse_proc_cgroup_v2("0::/a/b"), "/a/b");
}

TEST(ProcCgroupTest, RejectsWhatIsNoCgroupPath) {
  EXPECT_EQ(parse_proc_cgroup_v2("4:memory:/x\n").error().code(), Errc::kNotFound);
  EXPECT_FALSE(parse_proc_cgroup_v2("0::relative\n"));
  EXPECT_FALSE(parse_proc_cgroup_v2("0::\n"));
  EXPECT_FALSE(parse_proc_cgroup_v2("0::/a/../b\n"));
  EXPECT_FALSE(parse_proc_cgroup_v2("0::/a/..\n"));
  EXPECT_FALSE(parse_proc_cgroup_v2(std::string("0::/a\0b\n", 8)));
}

TEST(CgroupEventsTest, ReadsPopulated) {
  EXPECT_TRUE(*parse_cgroup_populated("populated 1\nfrozen 0\n"));
  EXPECT_FALSE(*parse_cgroup_populated("populated 0\nfrozen 0\n"));
  EXPECT_FALSE(*parse_cgroup_populated("frozen 0\npopulated 0"));
  EXPECT_FALSE(parse_cgroup_populated("frozen 0\n"));
  EXPECT_FALSE(parse_cgroup_populated("populated 2\n"));
  EXPECT_FALSE(parse_cgroup_populated("populated \n"));
  EXPECT_FALSE(parse_cgroup_populated(""));
}

}  // namespace
}  // namespace ctrust::agent
