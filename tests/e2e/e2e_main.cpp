// The end-to-end test binary is also the app under test: started by a ferry server as a container, it
// serves functions instead of running the tests.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "test_app.hpp"

int main(int argc, char** argv) {
  if (std::getenv("FERRY_DESCRIBE")) return e2e::app().main(argc, argv, [] {});  // `ferry deploy` asks
  if (std::getenv("FERRY_CONTAINER_ID")) {
    const char* function = std::getenv("FERRY_FUNCTION");
    if (function && std::string(function) == "never_starts") {
      std::fputs("never_starts: failing on purpose before serving\n", stderr);
      return 3;
    }
    // A program whose main does work before app.main (say, parses a large configuration): its containers
    // take that long to start, a window in which they can be killed.
    if (const char* ms = std::getenv("E2E_SLOW_START_MS"))
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(ms)));
    return e2e::app().main(argc, argv, [] {});
  }
  if (const char* scenario = std::getenv("E2E_SCENARIO")) return e2e::run_scenario(scenario);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
