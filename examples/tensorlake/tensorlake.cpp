// Tensorlake's async functions guide (seeds/004), every snippet as a ferry function; main runs each one
// as the seed's application and prints its result.
#include <cctype>
#include <ferry/ferry.hpp>
#include <iostream>
#include <string>
#include <vector>

using ferry::Future;
using ferry::Task;

ferry::App app{"tensorlake"};

// --- async functions: awaiting one async function from another ---
Task<std::string> capitalize(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  co_return text;
}
auto capitalize_fn = app.function("capitalize", capitalize);

Task<std::string> greet(std::string name) {
  // Calling an async function returns a lazy Task; co_await starts it and waits for it.
  std::string capitalized = co_await capitalize_fn(name);
  co_return "Hello, " + capitalized + "!";
}
auto greet_fn = app.function("greet", greet);

// --- create_task ---
Task<std::int64_t> double_value(std::int64_t x) { co_return x * 2; }
auto double_fn = app.function("double", double_value);

Task<std::int64_t> create_task_app(std::int64_t x) {
  auto task = ferry::create_task(double_fn(x));  // starts in the background
  co_return co_await std::move(task);            // do something else, then await it
}
auto create_task_app_fn = app.function("create_task_app", create_task_app);

// --- gather ---
Task<std::string> make_joke(std::string name) {
  co_return "Why did " + name + " cross the road? To get to the other side!";
}
auto make_joke_fn = app.function("make_joke", make_joke);

Task<std::string> greet_with_joke(std::string name) {
  auto [capitalized, joke] = co_await ferry::gather(capitalize_fn(name), make_joke_fn(name));
  co_return "Hello, " + capitalized + "! " + joke;
}
auto greet_with_joke_fn = app.function("greet_with_joke", greet_with_joke);

// --- map and reduce ---
Task<std::int64_t> add(std::int64_t a, std::int64_t b) { co_return a + b; }
auto add_fn = app.function("add", add);

Task<std::int64_t> process_numbers(std::vector<std::int64_t> numbers) {
  std::vector<std::int64_t> doubled = co_await double_fn.map.aio(std::move(numbers));
  co_return co_await add_fn.reduce.aio(std::move(doubled));
}
auto process_numbers_fn = app.function("process_numbers", process_numbers);

// --- calls as inputs: the server runs both doubles in parallel, then add ---
Task<std::int64_t> calls_as_inputs(std::int64_t x) {
  auto a = double_fn(x);  // async calls not yet awaited (Tasks), passed as arguments
  auto b = double_fn(x + 1);
  co_return co_await add_fn(a, b);
}
auto calls_as_inputs_fn = app.function("calls_as_inputs", calls_as_inputs);

// The same with futures.
Task<std::int64_t> futures_as_inputs(std::int64_t x) {
  auto a = double_fn.future(x);
  auto b = double_fn.future(x + 1);
  co_return co_await add_fn(a, b);
}
auto futures_as_inputs_fn = app.function("futures_as_inputs", futures_as_inputs);

// --- tail calls: return a future; this function's container is freed at once ---
Task<Future<std::int64_t>> tail_call_app(std::int64_t x) { co_return double_fn.future(x); }
auto tail_call_app_fn = app.function("tail_call_app", tail_call_app);

std::int64_t sync_double(std::int64_t x) { return x * 2; }
auto sync_double_fn = app.function("sync_double", sync_double);

Task<Future<std::int64_t>> sync_future_tail_call_app(std::int64_t x) { co_return sync_double_fn.future(x); }
auto sync_future_tail_call_app_fn = app.function("sync_future_tail_call_app", sync_future_tail_call_app);

// --- calling sync functions from async ones, without blocking the event loop ---
Task<std::int64_t> await_sync_future_app(std::int64_t x) { co_return co_await sync_double_fn.future(x); }
auto await_sync_future_app_fn = app.function("await_sync_future_app", await_sync_future_app);

Task<std::int64_t> background_task_app(std::int64_t x) {
  auto double_task = ferry::create_task(sync_double_fn.future(x).coroutine());
  co_return co_await std::move(double_task);
}
auto background_task_app_fn = app.function("background_task_app", background_task_app);

// --- calling async functions from sync ones ---
Task<std::int64_t> async_double(std::int64_t x) { co_return x * 2; }
auto async_double_fn = app.function("async_double", async_double);

Task<std::int64_t> async_add(std::int64_t a, std::int64_t b) { co_return a + b; }
auto async_add_fn = app.function("async_add", async_add);

std::int64_t sync_app(std::int64_t x) {
  std::int64_t doubled = async_double_fn.future(x).result();
  return async_add_fn.future(x, doubled).result();
}
auto sync_app_fn = app.function("sync_app", sync_app);

int main(int argc, char** argv) {
  return app.main(argc, argv, [] {
    std::cout << "greet: " << greet_fn.remote("alice") << '\n';
    std::cout << "create_task: " << create_task_app_fn.remote(21) << '\n';
    std::cout << "gather: " << greet_with_joke_fn.remote("alice") << '\n';
    std::cout << "map and reduce: " << process_numbers_fn.remote({1, 2, 3, 4}) << '\n';
    std::cout << "calls as inputs: " << calls_as_inputs_fn.remote(4) << '\n';
    std::cout << "futures as inputs: " << futures_as_inputs_fn.remote(4) << '\n';
    std::cout << "tail call: " << tail_call_app_fn.remote(21) << '\n';
    std::cout << "tail call of a sync future: " << sync_future_tail_call_app_fn.remote(21) << '\n';
    std::cout << "await a sync future: " << await_sync_future_app_fn.remote(21) << '\n';
    std::cout << "background task: " << background_task_app_fn.remote(21) << '\n';
    std::cout << "sync calling async: " << sync_app_fn.remote(21) << '\n';
  });
}
