// Modal's async guide (seeds/000): an async entrypoint runs 100 remote calls of an async function in
// parallel.
//
//     @app.function()
//     async def myfunc():
//         ...
//
//     @app.local_entrypoint()
//     async def main():
//         # execute 100 remote calls to myfunc in parallel
//         await asyncio.gather(*[myfunc.remote.aio() for i in range(100)])
#include <ferry/ferry.hpp>
#include <iostream>
#include <vector>

ferry::App app{"async-gather"};

ferry::Task<void> myfunc() { co_return; }
auto my = app.function("myfunc", myfunc, {.max_inputs = 100});

int main(int argc, char** argv) {
  return app.main(argc, argv, []() -> ferry::Task<void> {
    // execute 100 remote calls to myfunc in parallel
    std::vector<ferry::Task<void>> calls;
    for (int i = 0; i < 100; ++i) calls.push_back(my.remote.aio());
    auto done = co_await ferry::gather(std::move(calls));
    std::cout << done.size() << " calls of myfunc finished\n";
  });
}
