// ferry's log output: stderr, level from FERRY_LOG_LEVEL (trace, debug, info, warn, error, off).
#pragma once

#include <string>

namespace ferry::runtime {

/// Sets up the default logger once; `default_level` applies when FERRY_LOG_LEVEL is unset.
void init_logging(const std::string& default_level);

}  // namespace ferry::runtime
