// Must not compile: a std::vector<Future<int>> passed where a std::vector<int> is expected. The test
// (tests/CMakeLists.txt) checks that the compiler's message tells the user what to do instead.
#include <ferry/ferry.hpp>
#include <numeric>
#include <vector>

ferry::App app{"compile-fail"};
auto twice = app.function("twice", [](int x) { return 2 * x; });
auto sum = app.function("sum", [](std::vector<int> xs) { return std::accumulate(xs.begin(), xs.end(), 0); });

int main(int argc, char** argv) {
  return app.main(argc, argv, [] {
    std::vector<ferry::Future<int>> parts;
    parts.push_back(twice.future(1));
    (void)sum.remote(parts);
  });
}
