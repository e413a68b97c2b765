#include "agent/control.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "support/temp_dir.h"
#include "util/file.h"
#include "util/hex.h"

namespace ctrust::agent {
namespace {

using nlohmann::json;

// A control socket served by a thread: each connection's line goes to `answer`, whose
// text (plus a newline) is written back.
class Server {
 public:
  using Answer = std::function<std::string(const std::string& line)>;

  Server(const std::string& path, Answer answer) : answer_(std::move(answer)) {
    auto listener = listen_control(path);
    if (!listener) {
      ADD_FAILURE() << listener.error().message();
      return;
    }
    listener_ = std::move(*listener);
    thread_ = std::thread([this] { run(); });
  }
  ~Server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int served() const { return served_; }

 private:
  void run() {
    while (!stop_) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      auto line = read_line(conn.get(), kMaxRequest, 5000);
      std::string text = (line ? answer_(*line) : "{\"ok\":false,\"error\":\"no line\"}") + "\n";
      (void)write_all(conn.get(), as_bytes(text));
      ++served_;
    }
  }

  Answer answer_;
  UniqueFd listener_;
  std::atomic<bool> stop_{false};
  std::atomic<int> served_{0};
  std::thread thread_;
};

class Control : public ::testing::Test {
 protected:
  testing::TempDir temp_;
  std::string socket_ = temp_.file("run/ctrustd.sock");
};

std::pair<UniqueFd, UniqueFd> socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void send_text(int fd, const std::string& text) {
  auto written = write_all(fd, as_bytes(text));
  ASSERT_TRUE(written) << written.error().message();
}

TEST_F(Control, CallRoundTrip) {
  Server server(socket_, [](const std::string& line) {
    auto request = json::parse(line);
    return json{{"ok", true}, {"echo", request}}.dump();
  });
  json request = {{"op", "status"}, {"id", "busybox-1"}, {"n", 3}};
  auto answer = control_call(socket_, request, 5000);
  ASSERT_TRUE(answer) << answer.error().message();
  EXPECT_EQ((*answer)["ok"], true);
  EXPECT_EQ((*answer)["echo"], request);

  // Several calls, one connection each.
  for (int i = 0; i < 3; ++i) {
    auto again = control_call(socket_, {{"op", "list"}, {"i", i}}, 5000);
    ASSERT_TRUE(again) << again.error().message();
    EXPECT_EQ((*again)["echo"]["i"], i);
  }
}

TEST_F(Control, ARefusalBecomesAnErrorWithTheAgentsMessage) {
  Server server(socket_, [](const std::string& line) {
    auto request = json::parse(line);
    std::string op = request["op"];
    if (op == "x") return std::string(R"({"ok": false, "error": "x"})");
    if (op == "silent") return std::string(R"({"ok": false})");
    if (op == "noerror") return std::string(R"({"ok": false, "error": 5})");
    if (op == "nook") return std::string(R"({"answer": 42})");
    if (op == "okstring") return std::string(R"({"ok": "true"})");
    if (op == "array") return std::string(R"([true])");
    if (op == "dup") return std::string(R"({"ok": true, "ok": false})");
    return std::string("not json");
  });
  auto x = control_call(socket_, {{"op", "x"}}, 5000);
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().message(), "x");
  EXPECT_EQ(x.error().code(), Errc::kInvalidArgument);

  for (const char* op : {"silent", "noerror"}) {
    auto r = control_call(socket_, {{"op", op}}, 5000);
    ASSERT_FALSE(r) << op;
    EXPECT_NE(r.error().message().find("without a reason"), std::string::npos)
        << r.error().message();
  }
  for (const char* op : {"nook", "okstring", "array"}) {
    auto r = control_call(socket_, {{"op", op}}, 5000);
    ASSERT_FALSE(r) << op;
    EXPECT_NE(r.error().message().find("no \"ok\""), std::string::npos) << r.error().message();
  }
  for (const char* op : {"dup", "garbage"}) {
    auto r = control_call(socket_, {{"op", op}}, 5000);
    ASSERT_FALSE(r) << op;
    EXPECT_NE(r.error().message().find("ctrustd's answer"), std::string::npos)
        << r.error().message();
  }
}

TEST_F(Control, CallWithoutAnAgentSaysSo) {
  auto r = control_call(socket_, {{"op", "list"}}, 1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kNotFound);
  EXPECT_NE(r.error().message().find("not running"), std::string::npos) << r.error().message();

  auto too_long = control_call("/" + std::string(200, 'a'), {{"op", "list"}}, 1000);
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(listen_control(""));
}

TEST_F(Control, CallTimesOutOnASilentAgent) {
  auto listener = listen_control(socket_);  // accepts (backlog) but never answers
  ASSERT_TRUE(listener) << listener.error().message();
  auto r = control_call(socket_, {{"op", "list"}}, 100);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("timed out"), std::string::npos) << r.error().message();
}

TEST_F(Control, OpenStreamsLines) {
  auto listener = listen_control(socket_);
  ASSERT_TRUE(listener) << listener.error().message();
  std::thread agent([&] {
    pollfd p{listener->get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    UniqueFd conn(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn.valid());
    auto line = read_line(conn.get(), kMaxRequest, 5000);
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(json::parse(*line)["op"], "events");
    send_text(conn.get(), "{\"ok\":true}\n{\"event\":1}\n");
    send_text(conn.get(), "{\"event\":2}\n");
  });
  auto fd = control_open(socket_, {{"op", "events"}});
  ASSERT_TRUE(fd) << fd.error().message();
  for (const char* want : {R"({"ok":true})", R"({"event":1})", R"({"event":2})"}) {
    auto line = read_line(fd->get(), 1024, 5000);
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(*line, want);
  }
  agent.join();
  auto end = read_line(fd->get(), 1024, 5000);
  ASSERT_FALSE(end);
  EXPECT_EQ(end.error().code(), Errc::kTruncated);
}

TEST(ReadLine, ReadsLinesOneAtATime) {
  auto [a, b] = socket_pair();
  send_text(a.get(), "first\nsecond\nthi");
  auto first = read_line(b.get(), 100, 1000);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(*first, "first");
  // read_line must not have consumed what follows the newline.
  auto second = read_line(b.get(), 100, 1000);
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(*second, "second");
  send_text(a.get(), "rd\n\n");
  auto third = read_line(b.get(), 100, 1000);
  ASSERT_TRUE(third) << third.error().message();
  EXPECT_EQ(*third, "third");
  auto empty = read_line(b.get(), 100, 1000);
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_EQ(*empty, "");
}

TEST(ReadLine, LeavesTheNextLineInTheSocket) {
  auto [a, b] = socket_pair();
  send_text(a.get(), "one\ntwo\n");
  ASSERT_TRUE(read_line(b.get(), 100, 1000));
  char buf[16];
  ssize_t n = ::recv(b.get(), buf, sizeof(buf), MSG_DONTWAIT);
  ASSERT_EQ(n, 4);
  EXPECT_EQ(std::string(buf, 4), "two\n");
}

TEST(ReadLine, LineLongerThanTheLimit) {
  {
    auto [a, b] = socket_pair();
    send_text(a.get(), "abcd\n");
    auto exact = read_line(b.get(), 4, 1000);
    ASSERT_TRUE(exact) << exact.error().message();
    EXPECT_EQ(*exact, "abcd");
  }
  {
    auto [a, b] = socket_pair();
    send_text(a.get(), "abcde\n");
    auto over = read_line(b.get(), 4, 1000);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code(), Errc::kLimit);
  }
  {
    // Longer than the limit and no newline yet: refused without waiting for the rest.
    auto [a, b] = socket_pair();
    send_text(a.get(), std::string(10000, 'x'));
    auto over = read_line(b.get(), 5000, 1000);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code(), Errc::kLimit);
  }
  {
    // A long line in many pieces still counts as one line.
    auto [a, b] = socket_pair();
    std::thread writer([fd = a.get()] {
      for (int i = 0; i < 10; ++i) send_text(fd, std::string(1000, 'y'));
      send_text(fd, "\n");
    });
    auto line = read_line(b.get(), 10000, 5000);
    writer.join();
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(line->size(), 10000U);
  }
}

TEST(ReadLine, EndOfFileMidLineIsTruncated) {
  auto [a, b] = socket_pair();
  send_text(a.get(), "{\"op\":");
  a.reset();
  auto r = read_line(b.get(), 100, 1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kTruncated);

  auto [c, d] = socket_pair();
  c.reset();
  auto nothing = read_line(d.get(), 100, 1000);
  ASSERT_FALSE(nothing);
  EXPECT_EQ(nothing.error().code(), Errc::kTruncated);
}

TEST(ReadLine, TimesOut) {
  auto [a, b] = socket_pair();
  auto start = std::chrono::steady_clock::now();
  auto r = read_line(b.get(), 100, 50);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("timed out"), std::string::npos) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  // A partial line, then silence.
  send_text(a.get(), "partial");
  auto partial = read_line(b.get(), 100, 50);
  ASSERT_FALSE(partial);
  EXPECT_NE(partial.error().message().find("timed out"), std::string::npos);
}

TEST_F(Control, ListenRefusesWhenAnotherAgentIsLive) {
  auto first = listen_control(socket_);
  ASSERT_TRUE(first) << first.error().message();
  auto second = listen_control(socket_);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("already listening"), std::string::npos)
      << second.error().message();
  // The live agent's socket is untouched.
  struct stat st {};
  ASSERT_EQ(::lstat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
}

TEST_F(Control, ListenReplacesAStaleSocket) {
  {
    auto dead = listen_control(socket_);
    ASSERT_TRUE(dead) << dead.error().message();
  }  // closed without unlinking: a stale socket file remains
  struct stat st {};
  ASSERT_EQ(::lstat(socket_.c_str(), &st), 0);
  auto fresh = listen_control(socket_);
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_TRUE(control_open(socket_, {{"op", "x"}}));  // reaches the new listener
}

TEST_F(Control, ListenDoesNotDeleteAFileThatIsNotASocket) {
  ASSERT_EQ(::mkdir(temp_.file("run").c_str(), 0700), 0);
  {
    std::ofstream out(socket_);
    out << "precious";
  }
  auto r = listen_control(socket_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(socket_), std::string::npos) << r.error().message();
  struct stat st {};
  ASSERT_EQ(::lstat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(Control, SocketIsMode0600InADirectoryMode0700) {
  mode_t old = ::umask(0);  // the socket's mode must not depend on the caller's umask
  auto listener = listen_control(socket_);
  ::umask(old);
  ASSERT_TRUE(listener) << listener.error().message();
  struct stat st {};
  ASSERT_EQ(::lstat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600U);
  ASSERT_EQ(::stat(temp_.file("run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700U);
  // The umask is restored.
  mode_t now = ::umask(022);
  ::umask(now);
  EXPECT_EQ(now, old);
}

TEST_F(Control, PeerUidIsTheCallersUid) {
  auto listener = listen_control(socket_);
  ASSERT_TRUE(listener) << listener.error().message();
  std::thread client([&] { (void)control_open(socket_, {{"op", "x"}}); });
  pollfd p{listener->get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  UniqueFd conn(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  client.join();
  ASSERT_TRUE(conn.valid());
  auto uid = peer_uid(conn.get());
  ASSERT_TRUE(uid) << uid.error().message();
  EXPECT_EQ(*uid, ::getuid());

  auto [a, b] = socket_pair();
  auto pair_uid = peer_uid(a.get());
  ASSERT_TRUE(pair_uid);
  EXPECT_EQ(*pair_uid, ::getuid());
  EXPECT_FALSE(peer_uid(-1));
}

}  // namespace
}  // namespace ctrust::agent
