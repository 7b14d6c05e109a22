// Fuzz target: the frame decoder. The input is one frame's body as the connection hands it to
// wire::parse_frame (after the length prefix); a frame that parses has its header decoded as its kind's
// header, and its payload as an error record or a reply's rows where the receiver would decode them.
//
// parse_frame must never throw and its payload must lie inside the body; header decoding may only throw
// ferry::DecodeError. A header that decodes must survive a round trip through frame_writer and parse_frame.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_target.hpp"
#include "seed_frames.hpp"
#include "wire/frame.hpp"
#include "wire/protocol.hpp"

namespace {

namespace wire = ferry::wire;
using wire::message_kind;

bool same_bytes(const ferry::detail::buffer& a, const ferry::detail::buffer& b) {
  return a.size() == b.size() && std::equal(a.data(), a.data() + a.size(), b.data());
}

/// Writes `header` as a frame of `kind`, parses that, decodes its header again and writes it once more:
/// both frames must be the same bytes.
template <class Header>
void check_round_trip(message_kind kind, const Header& header) {
  ferry::detail::buffer first;
  wire::frame_writer(first, kind, header).finish();
  std::string error;
  auto again = wire::parse_frame(first.view().subspan(wire::length_prefix_size), error);
  FUZZ_CHECK(again && again->kind == kind, "a frame written by frame_writer does not parse: " + error);
  ferry::detail::buffer second;
  wire::frame_writer(second, kind, again->decode_header<Header>()).finish();
  FUZZ_CHECK(same_bytes(first, second), "a header changed in a round trip through frame_writer and parse_frame");
}

template <class Header>
Header decode_checked(const wire::frame& f) {
  Header header = f.decode_header<Header>();
  check_round_trip(f.kind, header);
  return header;
}

/// Payloads the receiver decodes: error records after a failure status, rows in a reply.
void decode_payload(const wire::frame& f, wire::status status) {
  if (status != wire::status::ok) {
    const wire::error_record e = wire::decode_error(f.payload);
    FUZZ_CHECK(e.code != wire::status::ok && static_cast<std::uint8_t>(e.code) <= wire::last_status,
               "decode_error returned a status outside the failures");
    return;
  }
  if (f.kind != message_kind::reply) return;
  auto rows = [&]<class Row>() {
    ferry::detail::reader r{f.payload};
    try {
      ferry::decode<std::vector<Row>>(r);
    } catch (const ferry::DecodeError&) {
    }
  };
  rows.template operator()<wire::app_row>();
  rows.template operator()<wire::call_row>();
  rows.template operator()<wire::container_row>();
  rows.template operator()<wire::log_row>();
}

void decode_frame(const wire::frame& f) {
  switch (f.kind) {
    case message_kind::hello:
      decode_checked<wire::hello_header>(f);
      return;
    case message_kind::welcome:
      decode_checked<wire::welcome_header>(f);
      return;
    case message_kind::refused:
      decode_checked<wire::refused_header>(f);
      return;
    case message_kind::register_app:
      decode_checked<wire::register_app_header>(f);
      return;
    case message_kind::app_registered:
      decode_payload(f, decode_checked<wire::app_registered_header>(f).status);
      return;
    case message_kind::call:
      decode_checked<wire::call_header>(f);
      return;
    case message_kind::result:
      decode_payload(f, decode_checked<wire::result_header>(f).status);
      return;
    case message_kind::input:
      decode_checked<wire::input_header>(f);
      return;
    case message_kind::output:
      decode_payload(f, decode_checked<wire::output_header>(f).status);
      return;
    case message_kind::cancel:
      decode_checked<wire::cancel_header>(f);
      return;
    case message_kind::cancel_input:
      decode_checked<wire::cancel_input_header>(f);
      return;
    case message_kind::await_call:
      decode_checked<wire::await_call_header>(f);
      return;
    case message_kind::release:
      decode_checked<wire::release_header>(f);
      return;
    case message_kind::request:
      decode_checked<wire::request_header>(f);
      return;
    case message_kind::reply:
      decode_payload(f, decode_checked<wire::reply_header>(f).status);
      return;
    case message_kind::log:
      decode_checked<wire::log_row>(f);
      return;
    case message_kind::progress:
      decode_checked<wire::progress_header>(f);
      return;
    case message_kind::agent_ready:
      decode_checked<wire::agent_ready_header>(f);
      return;
    case message_kind::launch:
      decode_checked<wire::launch_header>(f);
      return;
    case message_kind::launched:
      decode_checked<wire::launched_header>(f);
      return;
    case message_kind::signal_container:
      decode_checked<wire::signal_container_header>(f);
      return;
    case message_kind::container_output:
      decode_checked<wire::container_output_header>(f);
      return;
    case message_kind::container_exited:
      decode_checked<wire::container_exited_header>(f);
      return;
    case message_kind::fetch_binary:
      decode_checked<wire::fetch_binary_header>(f);
      return;
    case message_kind::binary_chunk:
      decode_payload(f, decode_checked<wire::binary_chunk_header>(f).status);
      return;
    case message_kind::heartbeat:
      decode_checked<wire::heartbeat_header>(f);
      return;
    case message_kind::container_stats:
      decode_checked<wire::container_stats_header>(f);
      return;
    case message_kind::drain_output:
    case message_kind::output_drained:
      decode_checked<wire::drain_output_header>(f);
      return;
    case message_kind::tail_hop:
      decode_checked<wire::tail_hop_header>(f);
      return;
  }
  fuzz_fail("parse_frame accepted a kind that is not a message kind");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const char> body(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto f = wire::parse_frame(body, error);
  if (!f) {
    FUZZ_CHECK(!error.empty(), "parse_frame rejected a frame without saying why");
    return 0;
  }
  FUZZ_CHECK(f->payload.data() >= body.data() && f->payload.data() + f->payload.size() == body.data() + body.size(),
             "a frame's payload is not the rest of its body");
  try {
    decode_frame(*f);
  } catch (const ferry::DecodeError&) {
    // a malformed message: the connection closes with this error
  }
  return 0;
}

std::vector<std::pair<std::string, std::string>> fuzz_seeds() {
  using fuzz::frame_bytes;
  using fuzz::values;
  const auto spec =
      wire::function_spec{"square", "int64(int64)", 1, 8, 0, wire::retry_spec{3, 500, 2.0, 10'000}, 0, 0, 60'000, ""};
  const auto failure = [](ferry::detail::buffer& out) {
    wire::encode_error(out, {wire::status::remote_exception, "std::runtime_error", "boom", "square", "fc-1", "#0 f"});
  };
  const std::vector<std::pair<std::string, std::string>> frames = {
      {"hello", frame_bytes(message_kind::hello, wire::hello_header{1, "fuzz-token", 0, 0, 1234})},
      {"welcome", frame_bytes(message_kind::welcome, wire::welcome_header{"0.1.0", 1 << 20})},
      {"refused", frame_bytes(message_kind::refused, wire::refused_header{"invalid token"})},
      {"register_app",
       frame_bytes(message_kind::register_app, wire::register_app_header{"app", "/bin/app", {spec}, {"--flag"}})},
      {"app_registered_error",
       frame_bytes(message_kind::app_registered, wire::app_registered_header{wire::status::bad_arguments}, failure)},
      {"call", frame_bytes(message_kind::call, wire::call_header{1, "app", "square", wire::deliver_result, {}, 0},
                           values(std::tuple<std::int64_t>{7}))},
      {"call_with_dependency",
       frame_bytes(message_kind::call,
                   wire::call_header{2, "app", "add", wire::deliver_result | wire::keep_result, {{0, 1}}, 5},
                   values(std::tuple<std::monostate, std::int64_t>{std::monostate{}, 1}))},
      {"result_ok",
       frame_bytes(message_kind::result, wire::result_header{1, wire::status::ok}, values(std::int64_t{49}))},
      {"result_error",
       frame_bytes(message_kind::result, wire::result_header{1, wire::status::remote_exception}, failure)},
      {"input", frame_bytes(message_kind::input, wire::input_header{3, "fc-0000000000000003"},
                            values(std::tuple<std::int64_t>{7}))},
      {"output_error",
       frame_bytes(message_kind::output, wire::output_header{3, wire::status::container_crashed}, failure)},
      {"cancel", frame_bytes(message_kind::cancel, wire::cancel_header{1})},
      {"cancel_input", frame_bytes(message_kind::cancel_input, wire::cancel_input_header{3})},
      {"await_call", frame_bytes(message_kind::await_call, wire::await_call_header{1})},
      {"release", frame_bytes(message_kind::release, wire::release_header{1})},
      {"request_spawn", frame_bytes(message_kind::request, wire::request_header{1, "spawn", "app.square"},
                                    values(std::tuple<std::string, std::tuple<std::int64_t>>{"key", {7}}))},
      {"reply_apps",
       frame_bytes(message_kind::reply, wire::reply_header{1, wire::status::ok},
                   values(std::vector<wire::app_row>{{"app", "ab12", 1.5e9, {{"square", "int64(int64)"}}}}))},
      {"reply_containers",
       frame_bytes(message_kind::reply, wire::reply_header{2, wire::status::ok},
                   values(std::vector<wire::container_row>{{1, "app", "square", "ready", 2, 99, 1.5, 4096}}))},
      {"reply_error", frame_bytes(message_kind::reply, wire::reply_header{3, wire::status::unknown_call}, failure)},
      {"log", frame_bytes(message_kind::log,
                          wire::log_row{1, 1.5e9, "app", "square", "fc-1", wire::log_stream::stdout_stream, "a line"})},
      {"progress", frame_bytes(message_kind::progress, wire::progress_header{3, 1, 10, "one of ten"})},
      {"tail_hop", frame_bytes(message_kind::tail_hop, wire::tail_hop_header{3}, values(std::tuple<std::int64_t>{9}))},
      {"register_app_with_resources",
       frame_bytes(message_kind::register_app,
                   wire::register_app_header{
                       "app",
                       "/bin/app",
                       {wire::function_spec{"train", "int64(int64)", 1, 4, 0, wire::retry_spec{0, 1000, 2.0, 60'000}, 0,
                                            0, 60'000, "", 2.5, 4096, 1, "a100"}},
                       {}})},
      {"reply_containers_waiting",
       frame_bytes(message_kind::reply, wire::reply_header{4, wire::status::ok},
                   values(std::vector<wire::container_row>{{0, "app", "train", "waiting", 0, 0, 0, 0, "no host"}}))},
      {"agent_ready", frame_bytes(message_kind::agent_ready,
                                  wire::agent_ready_header{"n1", 4, 2000, 2, {"a100", "zone=eu"}, "17", true})},
      {"launch",
       frame_bytes(
           message_kind::launch,
           wire::launch_header{5, "credential", std::string(64, 'a'), "/bin/app", {"--flag"}, "app", "train", {0, 1}})},
      {"container_exited", frame_bytes(message_kind::container_exited,
                                       wire::container_exited_header{5, "exited with code 0", 0, true, true, false})},
      {"fetch_binary", frame_bytes(message_kind::fetch_binary, wire::fetch_binary_header{std::string(64, 'a'), 0})},
      {"heartbeat", frame_bytes(message_kind::heartbeat, wire::heartbeat_header{1})},
      {"container_stats",
       frame_bytes(message_kind::container_stats, wire::container_stats_header{{{5, 1 << 20}, {6, 3 << 20}}})},
      {"output_drained", frame_bytes(message_kind::output_drained, wire::drain_output_header{5})},
  };
  // The target reads a frame's body: without the length prefix.
  std::vector<std::pair<std::string, std::string>> seeds;
  for (const auto& [name, bytes] : frames) seeds.emplace_back(name, bytes.substr(wire::length_prefix_size));
  return seeds;
}
