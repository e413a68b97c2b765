// ctrust-runtime's decisions without a process: its configuration, the command lines of
// the engines that run it (as Docker, containerd and CRI-O write them), and the hooks it
// adds to a bundle. The program itself, with real runc, Docker and containerd, is
// tests/cli/runtime_test.sh.
#include "runtime/shim.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace ctrust::runtime {
namespace {

using nlohmann::json;

TEST(ShimConfig, DefaultsAndEveryKey) {
  auto empty = parse_shim_config("", "runtime.toml");
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_EQ(empty->runtime, "runc");
  EXPECT_EQ(empty->socket, "/run/ctrust/ctrustd.sock");
  EXPECT_FALSE(empty->fail_open);
  auto all = parse_shim_config(
      "runtime = \"/usr/bin/crun\"\nhook = \"/opt/ctrust/ctrust-hook\"\n"
      "socket = \"/tmp/s.sock\"\nfail_open = true\ntimeout = 30\n",
      "runtime.toml");
  ASSERT_TRUE(all) << all.error().message();
  EXPECT_EQ(all->runtime, "/usr/bin/crun");
  EXPECT_EQ(all->hook, "/opt/ctrust/ctrust-hook");
  EXPECT_EQ(all->socket, "/tmp/s.sock");
  EXPECT_TRUE(all->fail_open);
  EXPECT_EQ(all->timeout_s, 30);
}

TEST(ShimConfig, MistakesAreErrorsNotDefaults) {
  for (const char* bad : {"runtim = \"runc\"", "runtime = 1", "runtime = \"\"", "timeout = 0",
                          "hook = \"relative/ctrust-hook\"", "fail_open = \"yes\"", "[x]"}) {
    auto c = parse_shim_config(bad, "runtime.toml");
    EXPECT_FALSE(c) << bad;
    if (!c) {
      EXPECT_NE(c.error().message().find("runtime.toml"), std::string::npos);
    }
  }
}

TEST(Invocation, DockerAndContainerdCreate) {
  // As containerd's runc shim runs it for Docker, with daemon.json's runtimeArgs first.
  auto inv = parse_invocation({"--ctrust-config", "/etc/x.toml", "--root",
                               "/var/run/docker/runtime-runc/moby", "--log", "/run/b/log.json",
                               "--log-format", "json", "--systemd-cgroup", "create", "--bundle",
                               "/run/b", "--pid-file", "/run/b/init.pid", "abc"});
  ASSERT_TRUE(inv) << inv.error().message();
  EXPECT_EQ(inv->config_path, "/etc/x.toml");
  EXPECT_EQ(inv->command, "create");
  EXPECT_EQ(inv->bundle, "/run/b");
  EXPECT_EQ(inv->log_path, "/run/b/log.json");
  EXPECT_EQ(inv->log_format, "json");
  EXPECT_EQ(inv->runtime_args,
            (std::vector<std::string>{"--root", "/var/run/docker/runtime-runc/moby", "--log",
                                      "/run/b/log.json", "--log-format", "json", "--systemd-cgroup",
                                      "create", "--bundle", "/run/b", "--pid-file",
                                      "/run/b/init.pid", "abc"}))
      << "everything but ctrust's own option reaches the runtime unchanged";
}

TEST(Invocation, BundleSpellingsAndOtherCommands) {
  EXPECT_EQ(parse_invocation({"run", "-b", "/b", "x"})->bundle, "/b");
  EXPECT_EQ(parse_invocation({"run", "--bundle=/b2", "x"})->bundle, "/b2");
  EXPECT_EQ(parse_invocation({"--root=/r", "create", "x"})->bundle, "") << "the working dir";
  EXPECT_EQ(parse_invocation({"--ctrust-config=/c", "create", "x"})->config_path, "/c");
  // Not create/run: no bundle, nothing to do but pass it on.
  auto state = parse_invocation({"--root", "/r", "state", "x"});
  ASSERT_TRUE(state);
  EXPECT_EQ(state->command, "state");
  EXPECT_TRUE(state->bundle.empty());
  // A bundle option after "--" belongs to the container's process, not to create.
  EXPECT_EQ(parse_invocation({"exec", "x", "--", "sh", "-b", "/no"})->bundle, "");
  EXPECT_EQ(parse_invocation({"create", "x", "--", "-b", "/no"})->bundle, "");
  EXPECT_TRUE(parse_invocation({"--version"})->version);
  EXPECT_TRUE(parse_invocation({"-h"})->help);
  EXPECT_FALSE(parse_invocation({"--debug", "features"})->help);
  EXPECT_EQ(parse_invocation({"features"})->command, "features");
  EXPECT_FALSE(parse_invocation({"--root"})) << "a value is missing";
  EXPECT_FALSE(parse_invocation({"--ctrust-config"}));
  EXPECT_FALSE(parse_invocation({"create", "--bundle"}));
}

TEST(CreateArgs, TheIdAndThePidFileAmongTheOptions) {
  auto inv =
      parse_invocation({"--root", "/r", "--log", "/l", "create", "--bundle", "/b", "--pid-file",
                        "/p.pid", "--console-socket", "/c.sock", "--no-pivot", "ctr1"});
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->runtime_args[inv->command_index], "create");
  auto a = parse_create_args(*inv);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->id, "ctr1");
  EXPECT_EQ(a->pid_file, "/p.pid");
  // --opt=value, -b, crun's --config, the id before the options, and after "--".
  a = parse_create_args(
      *parse_invocation({"create", "--pid-file=/q", "-b", "/b", "-f", "c.json", "x"}));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->id, "x");
  EXPECT_EQ(a->pid_file, "/q");
  a = parse_create_args(*parse_invocation({"create", "y", "--bundle=/b"}));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->id, "y");
  EXPECT_EQ(a->pid_file, "");
  a = parse_create_args(*parse_invocation({"create", "--", "-z"}));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->id, "-z");
  EXPECT_FALSE(parse_create_args(*parse_invocation({"create", "--bundle", "/b"}))) << "no id";
  EXPECT_FALSE(parse_create_args(*parse_invocation({"create", "a", "b"}))) << "two ids";
  EXPECT_FALSE(parse_create_args(*parse_invocation({"create", "a", "--pid-file"})));
}

TEST(CreateArgs, TheStateHandedToTheAgent) {
  json state = json::parse(created_state("c1", 42, "/b"));
  EXPECT_EQ(state["id"], "c1");
  EXPECT_EQ(state["pid"], 42);
  EXPECT_EQ(state["status"], "created");
  EXPECT_EQ(state["bundle"], "/b");
}

const char* kSpec = R"({"ociVersion":"1.0.2","process":{"args":["sh"]},
  "hooks":{"createRuntime":[{"path":"/usr/bin/other","args":["other"]}],
           "poststop":[{"path":"/usr/bin/ctrust","args":["ctrust","hook","poststop"]}],
           "prestart":[{"path":"/p"}]}})";

TEST(AddHooks, OursFirstAndLastOthersKeptAndIdempotent) {
  ShimConfig config;
  config.socket = "/s.sock";
  HookSpec spec = hook_spec(config, "/opt/ctrust-hook");
  auto once = add_hooks(kSpec, spec);
  ASSERT_TRUE(once) << once.error().message();
  auto twice = add_hooks(*once, spec);
  ASSERT_TRUE(twice);
  EXPECT_EQ(*once, *twice) << "a second pass changes nothing";
  json doc = json::parse(*twice);
  ASSERT_EQ(doc["hooks"]["createRuntime"].size(), 2U);
  EXPECT_EQ(doc["hooks"]["createRuntime"][0]["path"], "/opt/ctrust-hook");
  EXPECT_EQ(doc["hooks"]["createRuntime"][0]["args"],
            json({"ctrust-hook", "createRuntime", "--socket", "/s.sock", "--timeout", "120"}));
  EXPECT_EQ(doc["hooks"]["createRuntime"][1]["path"], "/usr/bin/other");
  // `ctrust hook poststop` put there by hand (or by an earlier version) is removed: the
  // agent closes the books when the container's cgroup empties.
  EXPECT_FALSE(doc["hooks"].contains("poststop")) << doc["hooks"].dump();
  EXPECT_EQ(doc["hooks"]["prestart"].size(), 1U);
  EXPECT_EQ(doc["process"]["args"], json({"sh"}));
  // A changed configuration replaces the earlier hooks.
  config.fail_open = true;
  auto again = add_hooks(*twice, hook_spec(config, "/opt/ctrust-hook"));
  ASSERT_TRUE(again);
  json redone = json::parse(*again);
  ASSERT_EQ(redone["hooks"]["createRuntime"].size(), 2U);
  EXPECT_EQ(redone["hooks"]["createRuntime"][0]["args"].back(), "--fail-open");
}

TEST(AddHooks, NoHooksYet) {
  auto out = add_hooks(R"({"ociVersion":"1.0.2"})", hook_spec(ShimConfig{}, "/h"));
  ASSERT_TRUE(out);
  json doc = json::parse(*out);
  EXPECT_EQ(doc["hooks"]["createRuntime"].size(), 1U);
  EXPECT_FALSE(doc["hooks"].contains("poststop"));
}

TEST(AddHooks, OtherPoststopHooksStay) {
  auto out = add_hooks(R"({"ociVersion":"1.0.2","hooks":{"poststop":[
      {"path":"/usr/bin/ctrust","args":["ctrust","hook","poststop"]},{"path":"/x"}]}})",
                       hook_spec(ShimConfig{}, "/h"));
  ASSERT_TRUE(out);
  json doc = json::parse(*out);
  ASSERT_EQ(doc["hooks"]["poststop"].size(), 1U);
  EXPECT_EQ(doc["hooks"]["poststop"][0]["path"], "/x");
}

TEST(AddHooks, WhatIsNotARuntimeSpecIsRefused) {
  HookSpec spec = hook_spec(ShimConfig{}, "/h");
  for (const char* bad :
       {"", "[]", "{}", "{\"ociVersion\":1}", R"({"ociVersion":"1","hooks":[]})",
        R"({"ociVersion":"1","hooks":{"poststop":{}}})", R"({"ociVersion":"1","ociVersion":"2"})",
        "{\"ociVersion\":\"1\"", "\xff"}) {
    EXPECT_FALSE(add_hooks(bad, spec)) << bad;
  }
}

}  // namespace
}  // namespace ctrust::runtime
