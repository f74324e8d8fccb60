// gMocks for the exposure seam, for code above it (the CSI node service).
#ifndef TESTS_NODE_MOCK_EXPOSURE_H_
#define TESTS_NODE_MOCK_EXPOSURE_H_

#include "gmock/gmock.h"
#include "node/exposure/exposure.h"

namespace iser::node {

class MockBlockBackend : public BlockBackend {
 public:
  MOCK_METHOD(uint64_t, size_bytes, (), (const, override));
  MOCK_METHOD(uint32_t, block_size, (), (const, override));
  MOCK_METHOD(void, Read, (uint64_t, std::span<uint8_t>, IoCompletion), (override));
  MOCK_METHOD(void, Write, (uint64_t, std::span<const uint8_t>, IoCompletion), (override));
  MOCK_METHOD(void, Flush, (IoCompletion), (override));
  MOCK_METHOD(void, Discard, (uint64_t, uint64_t, IoCompletion), (override));
  MOCK_METHOD(bool, discard_zeroes, (), (const, override));
};

class MockExposedDevice : public ExposedDevice {
 public:
  MOCK_METHOD(const std::string&, device_path, (), (const, override));
  MOCK_METHOD(absl::Status, Detach, (), (override));
};

class MockExposure : public Exposure {
 public:
  MOCK_METHOD(absl::StatusOr<std::unique_ptr<ExposedDevice>>, Expose,
              (BlockBackend&, const ExposeOptions&), (override));
};

}  // namespace iser::node

#endif  // TESTS_NODE_MOCK_EXPOSURE_H_
