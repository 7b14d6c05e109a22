// SHA-256 micro-benchmarks: the digest that names a binary, which the server and each agent compute before a
// program's first container starts on an agent (src/server/sha256.hpp), with the CPU's SHA extensions (when
// it has them) and with the portable code.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "server/sha256.hpp"

namespace {

/// 16 MiB of varied bytes, in the 1 MiB pieces in which binaries are read and fetched.
const std::string& binary_image() {
  static const std::string image = [] {
    std::string s(16 << 20, '\0');
    std::uint32_t x = 1;
    for (auto& c : s) c = static_cast<char>((x = x * 1103515245 + 12345) >> 24);
    return s;
  }();
  return image;
}

template <class Make>
void digest_image(benchmark::State& state, Make make) {
  const std::string& image = binary_image();
  for (auto _ : state) {
    ferry::server::sha256 s = make();
    for (std::size_t at = 0; at < image.size(); at += 1 << 20) s.update({image.data() + at, std::size_t{1} << 20});
    benchmark::DoNotOptimize(s.hex());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(image.size()));
}

void BM_Sha256(benchmark::State& state) {
  state.SetLabel(ferry::server::sha256::uses_cpu_extensions() ? "SHA extensions" : "portable (no SHA extensions)");
  digest_image(state, [] { return ferry::server::sha256(); });
}
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond);

void BM_Sha256Portable(benchmark::State& state) {
  digest_image(state, [] { return ferry::server::sha256::portable(); });
}
BENCHMARK(BM_Sha256Portable)->Unit(benchmark::kMillisecond);

}  // namespace
