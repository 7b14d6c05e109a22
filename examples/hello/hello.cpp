// The blocking part of Modal's async guide (seeds/000): a function returning 42, called remotely.
//
//     @app.function()
//     def blocking_function():
//         return 42
//
// Run it with the embedded server (no set-up): ./build/dev/examples/hello
// or against a running `ferry server`:          ferry run ./build/dev/examples/hello
#include <ferry/ferry.hpp>
#include <iostream>

ferry::App app{"hello"};

int blocking_function() { return 42; }
auto blocking = app.function("blocking_function", blocking_function);

int main(int argc, char** argv) {
  return app.main(argc, argv, [] {
    std::cout << blocking.remote() << '\n';  // => 42, computed in a container
  });
}
