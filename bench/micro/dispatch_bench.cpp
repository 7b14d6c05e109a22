// Dispatch micro-benchmarks: the server's per-call work, from a received call to the input sent to a
// container and from the container's output to the caller's result.
//
// What is and is not covered. The scheduler and the call graph are components that run without sockets
// (src/server/scheduler.hpp, call_graph.hpp): these benchmarks drive the real ones, on the fake clock and
// launcher of their unit tests, with a host that sends nothing. Accepting a call (on_call) is the server's
// own, and needs a session: BM_DispatchAcceptCall runs its steps on the server's types with the real wire
// functions, a copy of a few lines to keep in step. Not covered: connection::send's mutex and send()
// syscall, record_end (history, metrics), logging. ferry_bench measures all of it, end to end.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <ferry/function.hpp>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/scheduler_fakes.hpp"
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
  caller.id = session_id{1};
  std::unordered_map<graph_id, std::unique_ptr<call_record>> inputs;
  std::uint64_t next_input_id = 1;
  for (auto _ : state) {
    auto [caller_call_id, app_name, function_name, flags, deps, parent_attempt] = f.decode_header<wire::call_header>();
    auto found = app.functions.find(function_name);
    auto owned = std::make_unique<call_record>();
    call_record& in = *owned;
    in.call_id = format_call_id(0x1234'5678'0000'0000 + next_input_id);
    in.id = graph_id{next_input_id++};
    in.caller_session = caller.id;
    in.caller_call_id = caller_call_id;
    in.flags = flags;
    in.function = &found->second;
    in.arguments = wire::payload::keep(f);
    in.created = std::chrono::steady_clock::now();
    in.created_at = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    inputs.emplace(in.id, std::move(owned));
    caller.open_calls.emplace(caller_call_id, &in);
    in.state = call_state::queued;
    fn.queue.push_back(&in);
    benchmark::DoNotOptimize(fn.queue.back());
    // (Forget it again, so that every iteration starts from the same state.)
    const graph_id id = in.id;
    fn.queue.pop_front();
    caller.open_calls.erase(caller_call_id);
    inputs.erase(id);
  }
  state.SetLabel(size_label(state.range(0)));
}
BENCHMARK(BM_DispatchAcceptCall)->Arg(0)->Arg(64 << 10);

/// The server around the scheduler and the call graph, minus the I/O: an input "sent" is noted, a result
/// "delivered" is encoded into a reused buffer as the server's deliver does.
struct bench_host final : call_graph::host, scheduler::host {
  void ready(call_record& c) override { sched->enqueue(c); }
  void ended(call_record& c, call_state was) override { sched->ended(c, was); }
  void deliver(call_record& c) override {
    out.clear();
    wire::frame_writer writer(out, wire::message_kind::result, wire::result_header{c.caller_call_id, c.outcome});
    writer.payload().append(c.result.data(), c.result.size());
    writer.finish();
  }
  void unneeded(call_record&) override {}
  void forgetting(call_record&) override {}
  void emptied() override {}
  bool send_input(container_record& c, attempt_id attempt, const call_record&) override {
    sent_to = &c;
    sent_attempt = attempt;
    return true;
  }
  void send_cancel(container_record&, attempt_id) override {}
  void disconnect(container_record&, const std::string&) override {}
  void refill(function_state&) override {}
  void output(container_record&, int, std::string_view) override {}
  void exiting(container_record&) override {}
  void exited() override {}
  void unplaced(ferry::server::function_state&, std::size_t) override {}
  void warn_repeating(const std::string&, const std::string&, const std::string&) override {}

  scheduler* sched = nullptr;
  container_record* sent_to = nullptr;
  attempt_id sent_attempt{};
  buffer out;
};

/// A function with `n` containers started and connected, through the real scheduler on a fake clock and
/// launcher.
struct scheduled_function {
  explicit scheduled_function(std::size_t n, int max_inputs) {
    fn.app = &app;
    fn.name = "double_it";
    fn.max_inputs = max_inputs;
    fn.max_containers = static_cast<int>(n);
    fn.min_containers = static_cast<int>(n);
    host.sched = &sched;
    sched.scale(fn);
    for (const auto& [id, process] : launcher.launched) sched.connected(container_id{id}, process->spec.credential);
  }
  app_instance app;
  function_state& fn = app.functions["double_it"];
  bench_host host;
  testing::fake_clock time;
  testing::fake_launcher launcher;
  call_graph graph{host};
  scheduler sched{host, graph, time, launcher, scheduler_options{}};
};

// The scheduler's dispatch of one queued call among N ready containers (each with some calls in flight) and
// the answer that frees its slot: enqueue, the least-loaded scan, the attempt's bookkeeping, scale(), and
// answered(); grows with the container count. The real scheduler, with a host that sends nothing.
void BM_DispatchPickContainer(benchmark::State& state) {
  const auto n_containers = static_cast<std::size_t>(state.range(0));
  scheduled_function f(n_containers, 256);
  call_record busy;  // what the pre-existing in-flight slots point to
  std::uint64_t preloaded = std::uint64_t{1} << 40;
  std::size_t i = 0;
  for (const auto& [id, c] : f.sched.containers()) {
    // Uneven loads, so that the scan's comparisons go both ways.
    for (std::size_t k = 0; k < 100 + (i * 37) % 101; ++k) c->in_flight.emplace(attempt_id{preloaded++}, &busy);
    ++i;
  }
  call_record in;
  in.function = &f.fn;
  for (auto _ : state) {
    f.sched.enqueue(in);
    benchmark::DoNotOptimize(f.host.sent_to);
    f.sched.answered(*f.host.sent_to, f.host.sent_attempt, wire::status::ok);  // the slot is free again
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DispatchPickContainer)->Arg(1)->Arg(8)->Arg(64);

// The input frame dispatch() hands to connection::send (input header with attempt id and call id, then the
// stored arguments copied in), into a reused outgoing buffer; the per-input encoding cost, by argument size.
void BM_DispatchEncodeInput(benchmark::State& state) {
  call_record in;
  in.call_id = format_call_id(0x1234'5678'0000'0001);
  in.arguments = wire::payload(make_arguments(state.range(0)));
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

// A call's way through the server's components once it is accepted, minus the I/O: into the call graph,
// ready, queued and dispatched by the scheduler (the input noted as sent), then the container's output (int64
// or 64 KiB result): the attempt's slot freed (scheduler::answered), the result kept (call_graph::complete),
// the caller's result frame built from it, and the call forgotten. The real components throughout.
void BM_DispatchCallToResult(benchmark::State& state) {
  buffer result;
  if (state.range(0) == 0) {
    ferry::encode(result, std::int64_t{42});
  } else {
    ferry::encode(result, ferry::bytes(static_cast<std::size_t>(state.range(0)), std::byte{0x5a}));
  }
  buffer encoded;
  {
    wire::frame_writer w(encoded, wire::message_kind::output, wire::output_header{1, wire::status::ok});
    w.payload().append(result.data(), result.size());
    w.finish();
  }
  const wire::frame output = parse(encoded);
  const buffer args = make_arguments(0);
  scheduled_function f(1, 1);
  std::uint64_t next_id = 1;
  for (auto _ : state) {
    auto owned = std::make_unique<call_record>();
    owned->id = graph_id{next_id++};
    owned->caller_call_id = 7;
    owned->flags = wire::deliver_result;
    owned->function = &f.fn;
    owned->arguments = wire::payload::copy_of(args.view());
    f.graph.start_when_ready(f.graph.add(std::move(owned)));  // sent to the container
    auto [attempt_id, st] = output.decode_header<wire::output_header>();
    benchmark::DoNotOptimize(attempt_id);
    const auto answer = f.sched.answered(*f.host.sent_to, f.host.sent_attempt, static_cast<wire::status>(st));
    f.graph.complete(*answer.call, static_cast<wire::status>(st),
                     wire::payload::keep(output));  // delivers, then forgets
    benchmark::DoNotOptimize(f.host.out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * f.host.out.size()));
  state.SetLabel(state.range(0) == 0 ? "int64 result" : "bytes result");
}
BENCHMARK(BM_DispatchCallToResult)->Arg(0)->Arg(64 << 10);

}  // namespace
