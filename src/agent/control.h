// The agent's control socket: a root-only UNIX stream socket over which the CLI and the
// OCI hook talk to ctrustd. One request per connection: a JSON object on one line; the
// answer is one JSON object on one line ({"ok": true, ...} or {"ok": false, "error":
// "..."}), except for "events", which streams one JSON object per line until the client
// goes away. Requests are untrusted bytes like any other: at most kMaxRequest bytes,
// parsed strictly (util/json.h).
//
// Thread safety: functions over their own descriptors.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::agent {

inline constexpr std::size_t kMaxRequest = std::size_t{4} << 20;

// Binds `path` (its directory is created 0700; a stale socket is replaced, a live one is
// an error: another agent is running) with mode 0600.
Result<UniqueFd> listen_control(const std::string& path);

// One line (without the newline), at most `max` bytes, waiting at most `timeout_ms` for
// each read (-1: forever). An error on timeout, on a longer line and on EOF before it.
Result<std::string> read_line(int fd, std::size_t max, int timeout_ms);

// Connects, sends `request`, reads one answer; an {"ok": false} answer becomes an Error
// with the agent's message.
Result<nlohmann::json> control_call(const std::string& socket, const nlohmann::json& request,
                                    int timeout_ms);
// Connects and sends `request`; the caller reads the lines (events).
Result<UniqueFd> control_open(const std::string& socket, const nlohmann::json& request);

// The uid of the peer of a connected UNIX socket.
Result<uid_t> peer_uid(int fd);

}  // namespace ctrust::agent
