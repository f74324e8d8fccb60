// Minimal leveled logging to stderr (abseil 20220623 has no absl/log).
//   ISER_LOG(kInfo, "session %s: logged in", name);
#ifndef ISER_BASE_LOGGING_H_
#define ISER_BASE_LOGGING_H_

#include <string_view>

#include "absl/strings/str_format.h"

namespace iser {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void LogLine(LogLevel level, const char* file, int line, std::string_view message);

}  // namespace iser

#define ISER_LOG(level, ...)                                       \
  do {                                                             \
    if (::iser::LogLevel::level >= ::iser::GetLogLevel())          \
      ::iser::LogLine(::iser::LogLevel::level, __FILE__, __LINE__, \
                      ::absl::StrFormat(__VA_ARGS__));             \
  } while (0)

#endif  // ISER_BASE_LOGGING_H_
