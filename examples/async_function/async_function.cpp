// Modal's async guide (seeds/000): an async function awaits a blocking one; a blocking entrypoint calls
// the async function.
//
//     @app.function()
//     def blocking_function():
//         return 42
//
//     @app.function()
//     async def async_function():
//         x = await blocking_function.remote.aio()
//         return x * 10
//
//     @app.local_entrypoint()
//     def blocking_main():
//         print(async_function.remote())  # => 420
#include <ferry/ferry.hpp>
#include <iostream>

ferry::App app{"async-function"};

int blocking_function() { return 42; }
auto blocking = app.function("blocking_function", blocking_function);

ferry::Task<int> async_function() {
  int x = co_await blocking.remote.aio();  // an async body awaiting a blocking function
  co_return x * 10;
}
auto async_fn = app.function("async_function", async_function);

int main(int argc, char** argv) {
  return app.main(argc, argv, [] {
    std::cout << async_fn.remote() << '\n';  // => 420: a blocking call of an async function
  });
}
