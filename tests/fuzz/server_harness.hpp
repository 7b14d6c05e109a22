// A real ferry server on 127.0.0.1, inside the fuzz target's process, for the targets that speak to it over
// TCP (the handshake and HTTP). Started once per process, with its own state directory and one deployed
// app ("fuzz", functions below), so that requests can reach real apps, functions and argument checks.
//
// Its containers are never started: its launcher refuses (a fuzzer must not start processes), so a call
// that gets as far as needing one fails at once with container_start_failed.
#pragma once

#include <span>
#include <string>

namespace fuzz {

/// The token the server expects, in seeds and dictionaries too.
inline constexpr const char* token = "fuzz-token";

/// The deployed app: functions square (int64(int64)), greet (string(string,vector<int64>,map<string,float64>)),
/// nearest (point(point,optional<bool>,tuple<uint8,bytes>)) and nothing (void()).
inline constexpr const char* deployed_app = "fuzz";

/// Opens a connection to the server, writes `bytes`, closes its sending side and reads until the server
/// closes the connection: by then the server has handled everything that was sent. Returns what the server
/// answered. Aborts (a crash to the fuzzer) when the server stops accepting connections.
std::string exchange(std::span<const char> bytes);

/// Deploys app "fuzz" again, as it was at the start (after an input that may have stopped or replaced it).
void deploy_app();

}  // namespace fuzz
