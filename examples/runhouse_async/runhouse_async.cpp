// Runhouse's async tutorial (seeds/002): an async function run on the remote event loop, a blocking
// function run in a thread remotely but awaited locally, and both called blocking.
//
//     async def async_test(time_to_sleep: int):
//         await asyncio.sleep(time_to_sleep)
//         return time_to_sleep
//
//     def synchronous_sleep(time_to_sleep: int):
//         time.sleep(time_to_sleep)
//         return time_to_sleep
//
//     await async_test_fn_remote(2)                       # 2
//     await sync_sleep_fn_remote(2, run_async=True)        # 2
//     sync_sleep_fn_remote(2)                              # 2
//     async_test_fn_remote(2, run_async=False)             # 2
#include <chrono>
#include <ferry/ferry.hpp>
#include <iostream>
#include <thread>

ferry::App app{"runhouse-async"};

ferry::Task<int> async_test(int time_to_sleep) {
  co_await ferry::sleep(std::chrono::seconds(time_to_sleep));  // on the container's event loop
  co_return time_to_sleep;
}
auto async_test_fn = app.function("async_test", async_test);

int synchronous_sleep(int time_to_sleep) {
  std::this_thread::sleep_for(std::chrono::seconds(time_to_sleep));  // in a thread of its container
  return time_to_sleep;
}
auto sync_sleep_fn = app.function("synchronous_sleep", synchronous_sleep);

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 2;  // the seed sleeps 2 s
  return app.main(argc, argv, [seconds] {
    // Each line is one notebook cell of the seed; ferry::run awaits a Task from blocking code.
    std::cout << ferry::run(async_test_fn(seconds)) << '\n';  // await async_test_fn_remote(2)
    std::cout << ferry::run(sync_sleep_fn.remote.aio(seconds))
              << '\n';                                   // await sync_sleep_fn_remote(2, run_async=True)
    std::cout << sync_sleep_fn.remote(seconds) << '\n';  // sync_sleep_fn_remote(2)
    std::cout << async_test_fn.remote(seconds) << '\n';  // async_test_fn_remote(2, run_async=False)
  });
}
