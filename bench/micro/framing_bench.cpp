// Framing micro-benchmarks: building `call` and `output` frames as the client and the container send them,
// and finding frames in received bytes as the connection's read loop does.
//
// What is and is not covered: building a frame uses the real frame_writer (src/wire/frame.hpp), which is all
// that connection::send does to a frame besides taking its mutex and writing to the socket (not measured).
// connection::process_received is private and reads from a socket, so the splitting benchmarks run its loop
// here, a copy of its few lines around the real functions it calls: read_length_prefix, parse_frame
// (src/wire/protocol.cpp) and, in the handler, frame::decode_header. Keep the copy in step with
// connection.cpp.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <ferry/app.hpp>
#include <ferry/function.hpp>
#include <optional>
#include <string>
#include <vector>

#include "wire/frame.hpp"
#include "wire/protocol.hpp"

namespace {

using ferry::detail::buffer;
using namespace ferry::wire;

// How many frames the splitting benchmarks put back to back: small frames as one read of a busy peer brings
// them; fewer large ones, to keep the buffer at 4 MiB.
constexpr std::size_t small_frames = 1000;
constexpr std::size_t large_frames = 64;

const std::string app_name = "bench";
const std::string framed_function_name = "double_it";

std::int64_t int64_argument() { return 21; }
ferry::bytes bytes_argument_64k() { return ferry::bytes(64 << 10, std::byte{0x5a}); }

/// One call frame as client::send_call builds it: the call header (the app and function names copied from the
/// function's entry, as send_call does), then the argument array encoded straight into the frame.
template <class A>
void write_call_frame(buffer& out, std::uint64_t id, const A& argument) {
  frame_writer writer(out, message_kind::call, call_header{id, app_name, framed_function_name, deliver_result, {}, 0});
  ferry::detail::encode_arguments(writer.payload(), argument);
  writer.finish();
}

/// One output frame as the container runtime sends it: the output header, then the already encoded result
/// appended (container_runtime.cpp's send_output callback).
void write_output_frame(buffer& out, std::uint64_t input_id, const buffer& result) {
  frame_writer writer(out, message_kind::output, output_header{input_id, status::ok});
  writer.payload().append(result.data(), result.size());
  writer.finish();
}

/// connection::process_received's loop over a buffer of whole frames (as after one large read): calls
/// `handle` with each parsed frame; returns how many frames it found.
template <class Handle>
std::size_t split_frames(const buffer& received, Handle&& handle) {
  std::size_t consumed = 0;
  std::size_t frames = 0;
  while (true) {
    const std::size_t available = received.size() - consumed;
    if (available < length_prefix_size) break;
    const std::uint32_t length = read_length_prefix(received.data() + consumed);
    if (length > default_max_frame_size + header_allowance) break;
    if (available < length_prefix_size + length) break;
    std::string error;
    auto f = parse_frame({received.data() + consumed + length_prefix_size, length}, error);
    consumed += length_prefix_size + length;
    if (!f) break;
    handle(*f);
    ++frames;
  }
  return frames;
}

// Client: builds one call frame (header + int64 argument, or a 64 KiB bytes argument) into the reused
// outgoing buffer; the per-call cost of sending before any syscall.
template <class A>
void BM_FramingBuildCall(benchmark::State& state, A argument) {
  buffer out;
  std::uint64_t id = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(argument);  // not a constant the compiler could fold
    out.clear();
    write_call_frame(out, id++, argument);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
}
BENCHMARK_CAPTURE(BM_FramingBuildCall, int64_arg, int64_argument());
BENCHMARK_CAPTURE(BM_FramingBuildCall, bytes_64KiB_arg, bytes_argument_64k());

// Server: splits back-to-back call frames (1,000 small, or 64 large) and decodes each call header as on_call
// does; the per-frame cost of receiving calls.
template <class A>
void BM_FramingSplitCalls(benchmark::State& state, A argument, std::size_t frames, bool decode_header) {
  buffer received;
  for (std::size_t i = 0; i < frames; ++i) write_call_frame(received, i + 1, argument);
  for (auto _ : state) {
    const std::size_t n = split_frames(received, [&](const frame& f) {
      if (decode_header) {
        auto header = f.decode_header<call_header>();
        benchmark::DoNotOptimize(header);
      }
      benchmark::DoNotOptimize(f.payload.data());
    });
    if (n != frames) state.SkipWithError("the frames did not split");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * frames));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * received.size()));
}
// Only the connection's own work (length prefix + parse_frame): framing overhead per received frame.
BENCHMARK_CAPTURE(BM_FramingSplitCalls, int64_arg_frame_only, int64_argument(), small_frames, false);
// Plus call_header decoding (strings, the dependency vector), which every call frame gets.
BENCHMARK_CAPTURE(BM_FramingSplitCalls, int64_arg_with_header, int64_argument(), small_frames, true);
// 64 KiB payloads: splitting must not touch the payload, so the per-frame time should match int64's.
BENCHMARK_CAPTURE(BM_FramingSplitCalls, bytes_64KiB_arg_with_header, bytes_argument_64k(), large_frames, true);

// Container: builds one output frame around an already encoded result (int64, or 64 KiB bytes); the
// per-input cost of answering.
template <class R>
void BM_FramingBuildOutput(benchmark::State& state, R value) {
  buffer result;
  ferry::encode(result, value);
  buffer out;
  std::uint64_t id = 1;
  for (auto _ : state) {
    out.clear();
    write_output_frame(out, id++, result);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
}
BENCHMARK_CAPTURE(BM_FramingBuildOutput, int64_result, int64_argument());
BENCHMARK_CAPTURE(BM_FramingBuildOutput, bytes_64KiB_result, bytes_argument_64k());

// Server: splits back-to-back output frames (1,000 small, or 64 large) and decodes each output header as
// on_output does; the per-frame cost of receiving results from a busy container.
template <class R>
void BM_FramingSplitOutputs(benchmark::State& state, R value, std::size_t frames) {
  buffer result;
  ferry::encode(result, value);
  buffer received;
  for (std::size_t i = 0; i < frames; ++i) write_output_frame(received, i + 1, result);
  for (auto _ : state) {
    const std::size_t n = split_frames(received, [](const frame& f) {
      auto header = f.decode_header<output_header>();
      benchmark::DoNotOptimize(header);
      benchmark::DoNotOptimize(f.payload.data());
    });
    if (n != frames) state.SkipWithError("the frames did not split");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * frames));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * received.size()));
}
BENCHMARK_CAPTURE(BM_FramingSplitOutputs, int64_result, int64_argument(), small_frames);
BENCHMARK_CAPTURE(BM_FramingSplitOutputs, bytes_64KiB_result, bytes_argument_64k(), large_frames);

}  // namespace
