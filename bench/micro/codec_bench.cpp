// Codec micro-benchmarks: the arguments and results of a call, encoded and decoded by the same functions the
// client and the container use (include/ferry/function.hpp, app.hpp and future.hpp), for the payload shapes
// calls carry. Encoders write into a buffer that is reused, as the connection's outgoing buffer is; decoders
// build fresh values, as a call does.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <ferry/app.hpp>
#include <ferry/function.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

using ferry::detail::buffer;
using ferry::detail::reader;

/// A typical user struct: a FERRY_STRUCT travels as a map from field name to value.
struct record {
  std::int64_t id;
  std::string name;
  double score;
  std::vector<std::int64_t> tags;
  std::optional<std::string> note;
};
FERRY_STRUCT(record, id, name, score, tags, note)

std::int64_t make_int64() { return 1'234'567'890; }
std::string make_short_string() { return "hello, ferry"; }
/// Mixed magnitudes and signs, so that every MessagePack integer width occurs.
std::vector<std::int64_t> make_int64_vector() {
  std::vector<std::int64_t> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto x = static_cast<std::int64_t>(i);
    v[i] = (i % 4 == 0) ? x : (i % 4 == 1) ? -x * 1000 : (i % 4 == 2) ? x * 1'000'000 : -x * 1'000'000'000'000;
  }
  return v;
}
ferry::bytes make_bytes(std::size_t n) {
  ferry::bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>(i * 131 + 7);
  return b;
}
ferry::bytes make_bytes_64k() { return make_bytes(64 << 10); }
ferry::bytes make_bytes_1m() { return make_bytes(1 << 20); }
record make_record() { return {42, "sensor-17", 0.875, {1, 2, 3, 5, 8, 13, 21, 34}, std::nullopt}; }
std::map<std::string, std::int64_t> make_map() {
  std::map<std::string, std::int64_t> m;
  for (int i = 0; i < 100; ++i) m.emplace("key-" + std::to_string(i), i * 37);
  return m;
}

const std::string codec_function_name = "bench_fn";

void count_bytes(benchmark::State& state, std::size_t encoded, bool bytes_per_second) {
  if (bytes_per_second) state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * encoded));
}

// Client side of a call: encode_arguments writes the argument array into the outgoing frame (client::call).
template <class T>
void BM_EncodeArguments(benchmark::State& state, T value, bool bytes_per_second) {
  buffer out;
  for (auto _ : state) {
    benchmark::DoNotOptimize(value);  // a value the compiler cannot fold into constant stores
    out.clear();
    ferry::detail::encode_arguments(out, value);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  count_bytes(state, out.size(), bytes_per_second);
}

// Container side of a call: decode_arguments checks the array and decodes the parameters (body_invoker).
template <class T>
void BM_DecodeArguments(benchmark::State& state, T value, bool bytes_per_second) {
  buffer encoded;
  ferry::detail::encode_arguments(encoded, value);
  for (auto _ : state) {
    reader r{encoded.view()};
    auto decoded = ferry::detail::decode_arguments<T>(codec_function_name, r);
    benchmark::DoNotOptimize(decoded);
  }
  count_bytes(state, encoded.size(), bytes_per_second);
}

// Container side of a result: encode_value writes what the body returned (finish_body).
template <class T>
void BM_EncodeResult(benchmark::State& state, T value, bool bytes_per_second) {
  buffer out;
  for (auto _ : state) {
    benchmark::DoNotOptimize(value);
    out.clear();
    ferry::detail::encode_value(out, value);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  count_bytes(state, out.size(), bytes_per_second);
}

// Client side of a result: decode_call_result turns the received payload into the caller's value.
template <class T>
void BM_DecodeResult(benchmark::State& state, T value, bool bytes_per_second) {
  buffer encoded;
  ferry::detail::encode_value(encoded, value);
  for (auto _ : state) {
    T decoded = ferry::detail::decode_call_result<T>(codec_function_name, encoded);
    benchmark::DoNotOptimize(decoded);
  }
  count_bytes(state, encoded.size(), bytes_per_second);
}

// Each payload shape runs through all four directions above.
#define FERRY_CODEC_BENCH(name, value, bytes_per_second)                \
  BENCHMARK_CAPTURE(BM_EncodeArguments, name, value, bytes_per_second); \
  BENCHMARK_CAPTURE(BM_DecodeArguments, name, value, bytes_per_second); \
  BENCHMARK_CAPTURE(BM_EncodeResult, name, value, bytes_per_second);    \
  BENCHMARK_CAPTURE(BM_DecodeResult, name, value, bytes_per_second)

// int64: the smallest call (W1's double_it); the codec's fixed per-call overhead.
FERRY_CODEC_BENCH(int64, make_int64(), false);
// A short string (fits std::string's small buffer): the per-value cost of strings.
FERRY_CODEC_BENCH(short_string, make_short_string(), false);
// vector<int64> of 1,000 mixed-width integers: per-element cost of containers.
FERRY_CODEC_BENCH(vector_int64_1000, make_int64_vector(), true);
// 64 KiB byte string (MessagePack bin): bulk copy speed for medium payloads.
FERRY_CODEC_BENCH(bytes_64KiB, make_bytes_64k(), true);
// 1 MiB byte string: bulk copy speed for large payloads (memory bandwidth, buffer growth).
FERRY_CODEC_BENCH(bytes_1MiB, make_bytes_1m(), true);
// A FERRY_STRUCT of five fields (map by field name): the field-name matching in struct decoding.
FERRY_CODEC_BENCH(struct_5_fields, make_record(), false);
// map<string, int64> of 100 entries: per-entry cost of maps (key strings, tree inserts).
FERRY_CODEC_BENCH(map_string_int64_100, make_map(), true);

}  // namespace
