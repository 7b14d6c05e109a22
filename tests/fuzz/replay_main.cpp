// In builds without libFuzzer (gcc, the sanitizer presets), a fuzz target's main:
//   TARGET_fuzz_replay PATH...              runs LLVMFuzzerTestOneInput once on every file named or in the
//                                           directories named (but dot files), as libFuzzer does with
//                                           -runs=0: the seed corpus and the regression inputs. Exit code
//                                           0 when none crashed.
//   TARGET_fuzz_replay --write-seeds DIR    writes the target's seed corpus (fuzz_seeds()) into DIR.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_target.hpp"

namespace {

int write_seeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const auto seeds = fuzz_seeds();
  for (const auto& [name, bytes] : seeds) {
    std::ofstream(dir / name, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::printf("wrote %zu seeds into %s\n", seeds.size(), dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-seeds") return write_seeds(argv[2]);
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path path = argv[i];
    if (std::filesystem::is_directory(path)) {
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (entry.is_regular_file() && !entry.path().filename().string().starts_with("."))
          inputs.push_back(entry.path());
      }
    } else if (std::filesystem::exists(path)) {
      inputs.push_back(path);
    } else {
      std::fprintf(stderr, "%s: no such file or directory\n", path.c_str());
      return 2;
    }
  }
  std::sort(inputs.begin(), inputs.end());
  for (const auto& path : inputs) {
    std::ifstream file(path, std::ios::binary);
    const std::vector<char> bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    std::fprintf(stderr, "running %s (%zu bytes)\n", path.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("%zu inputs ran without a crash\n", inputs.size());
  return 0;
}
