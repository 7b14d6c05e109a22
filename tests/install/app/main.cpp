// An app built against the installed SDK, outside ferry's source tree.
#include <ferry/ferry.hpp>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

ferry::App app{"sdk"};

auto sum = app.function("sum", [](std::vector<int> xs) { return std::accumulate(xs.begin(), xs.end(), 0); });
auto greet = app.function("greet", [](std::string name) { return "hello, " + name; });

int main(int argc, char** argv) {
  return app.main(argc, argv, [] {
    std::cout << "sum=" << sum.remote({1, 2, 3}) << " greeting=" << greet.remote("sdk") << '\n';
  });
}
