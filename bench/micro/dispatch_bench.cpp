// Dispatch micro-benchmarks: the server's per-input work, from a received call to the input sent to a
// container and from the container's output to the caller's result.
//
// What is and is not covered. The real code, server::state::on_call / dispatch / on_output
// (src/server/server.cpp, scheduler.cpp), cannot be driven in isolation: server::state is a private member
// type of ferry::server::server (server.hpp), and dispatch() sends through wire::connection, which owns a
// connected TCP socket, so running it needs a live server with connected peers (that is ferry_bench's job).
// These benchmarks therefore run the same steps on the server's own types (call_record, function_state,
// container_record from server_state.hpp) with the real wire functions (frame::decode_header, frame_writer),
// and the scheduler's own least_loaded_ready, start_attempt and format_call_id, while the rest of the
// bookkeeping (the queue, on_call's and on_output's map entries) is a copy of a few lines: keep it in step. Not
// covered: connection::send's mutex and send() syscall, scale() after each dispatch, timeout timers, record_end
// (history, metrics), logging, dependencies and tail calls.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <ferry/function.hpp>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/server_state.hpp"
#include "wire/frame.hpp"
#include "wire/protocol.hpp"

namespace {

using ferry::detail::buffer;
using namespace ferry::server;
namespace wire = ferry::wire;

/// The encoded argument array of a call: one int64 (size 0), or one byte string of `size` bytes.
buffer make_arguments(std::int64_t size) {
  buffer args;
  if (size == 0) {
    ferry::detail::encode_arguments(args, std::int64_t{21});
  } else {
    ferry::detail::encode_arguments(args, ferry::bytes(static_cast<std::size_t>(size), std::byte{0x5a}));
  }
  return args;
}

const char* size_label(std::int64_t size) { return size == 0 ? "int64 argument" : "bytes argument"; }

/// A parsed frame over `encoded` (a frame with its length prefix); `encoded` must outlive it.
wire::frame parse(const buffer& encoded) {
  std::string error;
  auto f =
      wire::parse_frame({encoded.data() + wire::length_prefix_size, encoded.size() - wire::length_prefix_size}, error);
  if (!f) throw std::runtime_error(error);
  return *f;
}

// on_call's per-call work on a received call frame (int64 or 64 KiB argument): decode the call header,
// create the input record (call id, arguments copied, timestamps), index it, queue it, and finally forget it
// as maybe_forget does; the server's fixed cost of accepting a call.
void BM_DispatchAcceptCall(benchmark::State& state) {
  const buffer args = make_arguments(state.range(0));
  buffer encoded;
  {
    wire::frame_writer w(encoded, wire::message_kind::call,
                         wire::call_header{7, "bench", "double_it", wire::deliver_result, {}, 0});
    w.payload().append(args.data(), args.size());
    w.finish();
  }
  const wire::frame f = parse(encoded);
  app_instance app;
  app.name = "bench";
  function_state& fn = app.functions["double_it"];
  fn.app = &app;
  fn.name = "double_it";
  session caller;
  caller.id = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<call_record>> inputs;
  std::uint64_t next_input_id = 1;
  for (auto _ : state) {
    auto [caller_call_id, app_name, function_name, flags, deps, parent_attempt] = f.decode_header<wire::call_header>();
    auto found = app.functions.find(function_name);
    auto owned = std::make_unique<call_record>();
    call_record& in = *owned;
    in.call_id = format_call_id(0x1234'5678'0000'0000 + next_input_id);
    in.id = next_input_id++;
    in.caller_session = caller.id;
    in.caller_call_id = caller_call_id;
    in.flags = flags;
    in.function = &found->second;
    in.arguments.append(f.payload.data(), f.payload.size());
    in.created = std::chrono::steady_clock::now();
    in.created_at = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    inputs.emplace(in.id, std::move(owned));
    caller.open_calls.emplace(caller_call_id, &in);
    in.state = call_state::queued;
    fn.queue.push_back(&in);
    benchmark::DoNotOptimize(fn.queue.back());
    // (Forget it again, so that every iteration starts from the same state.)
    const std::uint64_t id = in.id;
    fn.queue.pop_front();
    caller.open_calls.erase(caller_call_id);
    inputs.erase(id);
  }
  state.SetLabel(size_label(state.range(0)));
}
BENCHMARK(BM_DispatchAcceptCall)->Arg(0)->Arg(64 << 10);

// dispatch()'s choice of a container for one queued input among N ready ones (each with some inputs in
// flight): the least-loaded scan, the queue pop and the in-flight bookkeeping; grows with the container count.
void BM_DispatchPickContainer(benchmark::State& state) {
  const auto n_containers = static_cast<std::size_t>(state.range(0));
  app_instance app;
  function_state& fn = app.functions["double_it"];
  fn.app = &app;
  fn.max_inputs = 256;
  fn.max_containers = static_cast<int>(n_containers);
  std::vector<std::unique_ptr<container_record>> containers;
  std::uint64_t next_input_id = 1;
  call_record busy;  // what the pre-existing in-flight slots point to
  for (std::size_t i = 0; i < n_containers; ++i) {
    auto c = std::make_unique<container_record>();
    c->id = i + 1;
    c->function = &fn;
    c->state = container_state::ready;
    // Uneven loads, so that the scan's comparisons go both ways.
    for (std::size_t k = 0; k < 100 + (i * 37) % 101; ++k) c->in_flight.emplace(next_input_id++, &busy);
    fn.containers.push_back(c.get());
    containers.push_back(std::move(c));
  }
  call_record in;
  in.function = &fn;
  for (auto _ : state) {
    in.state = call_state::queued;
    fn.queue.push_back(&in);
    // scheduler.cpp, dispatch(): the loop's body for one input (the send is BM_DispatchEncodeInput's).
    container_record* target = least_loaded_ready(fn);
    call_record& next = *fn.queue.front();
    const std::uint64_t attempt_id = next_input_id++;
    fn.queue.pop_front();
    start_attempt(next, *target, attempt_id);
    benchmark::DoNotOptimize(target);
    // The attempt's output frees the slot (detach_attempt), so that the loads stay as they were.
    target->in_flight.erase(attempt_id);
    next.container = nullptr;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DispatchPickContainer)->Arg(1)->Arg(8)->Arg(64);

// The input frame dispatch() hands to connection::send (input header with attempt id and call id, then the
// stored arguments copied in), into a reused outgoing buffer; the per-input encoding cost, by argument size.
void BM_DispatchEncodeInput(benchmark::State& state) {
  call_record in;
  in.call_id = format_call_id(0x1234'5678'0000'0001);
  in.arguments = make_arguments(state.range(0));
  buffer out;
  std::uint64_t attempt_id = 1;
  for (auto _ : state) {
    out.clear();
    wire::frame_writer writer(out, wire::message_kind::input, wire::input_header{attempt_id++, in.call_id});
    writer.payload().append(in.arguments.data(), in.arguments.size());
    writer.finish();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
  state.SetLabel(size_label(state.range(0)));
}
BENCHMARK(BM_DispatchEncodeInput)->Arg(0)->Arg(1 << 10)->Arg(64 << 10);

// on_output -> complete -> deliver for one output frame (int64 or 64 KiB result): decode the output header,
// find and free the attempt's slot, keep the result, and build the caller's result frame from it; the
// server's per-input cost of answering.
void BM_DispatchOutputToResult(benchmark::State& state) {
  buffer result;
  if (state.range(0) == 0) {
    ferry::encode(result, std::int64_t{42});
  } else {
    ferry::encode(result, ferry::bytes(static_cast<std::size_t>(state.range(0)), std::byte{0x5a}));
  }
  constexpr std::uint64_t attempt_id = 99;
  buffer encoded;
  {
    wire::frame_writer w(encoded, wire::message_kind::output,
                         wire::output_header{attempt_id, static_cast<std::uint8_t>(wire::status::ok)});
    w.payload().append(result.data(), result.size());
    w.finish();
  }
  const wire::frame f = parse(encoded);
  app_instance app;
  function_state& fn = app.functions["double_it"];
  fn.app = &app;
  container_record c;
  c.function = &fn;
  c.state = container_state::ready;
  call_record in;
  in.function = &fn;
  in.caller_call_id = 7;
  in.flags = wire::deliver_result;
  buffer out;
  for (auto _ : state) {
    in.state = call_state::running;
    in.container = &c;
    in.attempt_id = attempt_id;
    c.in_flight.emplace(attempt_id, &in);
    // on_output
    auto [input_id, st] = f.decode_header<wire::output_header>();
    auto it = c.in_flight.find(input_id);
    c.stopping_attempts.erase(input_id);
    call_record& done = *it->second;
    // complete (detach_attempt, keep the result)
    done.container->in_flight.erase(done.attempt_id);
    done.container = nullptr;
    done.state = call_state::done;
    done.outcome = static_cast<wire::status>(st);
    done.result.clear();
    done.result.append(f.payload.data(), f.payload.size());
    // deliver, into the caller's reused outgoing buffer
    out.clear();
    wire::frame_writer writer(out, wire::message_kind::result,
                              wire::result_header{done.caller_call_id, static_cast<std::uint8_t>(done.outcome)});
    writer.payload().append(done.result.data(), done.result.size());
    writer.finish();
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
  state.SetLabel(state.range(0) == 0 ? "int64 result" : "bytes result");
}
BENCHMARK(BM_DispatchOutputToResult)->Arg(0)->Arg(64 << 10);

}  // namespace
