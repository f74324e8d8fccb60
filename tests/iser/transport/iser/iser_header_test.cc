#include "iser/transport/iser/iser_header.h"

#include <array>
#include <vector>

#include "gtest/gtest.h"

namespace iser::iser_transport {
namespace {

TEST(IserHeaderTest, ControlWithBothStagsMatchesLinuxLayout) {
  IserHeader h;
  h.write_valid = true;
  h.write_stag = 0x11223344;
  h.write_base = 0x0102030405060708;
  h.read_valid = true;
  h.read_stag = 0xAABBCCDD;
  h.read_base = 0x1112131415161718;
  std::array<uint8_t, kIserHeaderSize> b{};
  EncodeIserHeader(h, b);
  const std::array<uint8_t, kIserHeaderSize> want = {
      0x1C, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 1, 2, 3, 4, 5, 6, 7, 8,
      0xAA, 0xBB, 0xCC, 0xDD, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};
  EXPECT_EQ(b, want);
  auto d = DecodeIserHeader(b);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->opcode, IserOpcode::kControl);
  EXPECT_TRUE(d->write_valid);
  EXPECT_TRUE(d->read_valid);
  EXPECT_EQ(d->write_stag, 0x11223344u);
  EXPECT_EQ(d->write_base, 0x0102030405060708u);
  EXPECT_EQ(d->read_stag, 0xAABBCCDDu);
  EXPECT_EQ(d->read_base, 0x1112131415161718u);
}

TEST(IserHeaderTest, InvalidFieldsAreZeroedAndIgnored) {
  IserHeader h;
  h.write_stag = 7;  // WSV clear: not written
  h.read_valid = true;
  h.read_stag = 9;
  h.read_base = 0x1000;
  std::array<uint8_t, kIserHeaderSize> b{};
  b.fill(0xEE);
  EncodeIserHeader(h, b);
  EXPECT_EQ(b[0], 0x14);
  for (int i = 4; i < 16; ++i) EXPECT_EQ(b[i], 0) << i;
  // A peer that leaves junk in fields whose bit is clear: ignored.
  b[0] = 0x10;
  auto d = DecodeIserHeader(b);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->read_valid);
  EXPECT_EQ(d->read_stag, 0u);
  EXPECT_EQ(d->read_base, 0u);
}

TEST(IserHeaderTest, ControlMayBeFollowedByBhs) {
  std::vector<uint8_t> msg(kIserHeaderSize + 48, 0);
  msg[0] = 0x10;
  EXPECT_TRUE(DecodeIserHeader(msg).ok());
}

TEST(IserHeaderTest, HelloAndHelloReply) {
  IserHeader h;
  h.opcode = IserOpcode::kHello;
  h.max_version = 10;
  h.min_or_cur_version = 1;
  h.ird_or_ord = 0x1234;
  std::array<uint8_t, kIserHeaderSize> b{};
  EncodeIserHeader(h, b);
  EXPECT_EQ(b[0], 0x20);
  EXPECT_EQ(b[1], 0xA1);
  EXPECT_EQ(b[2], 0x12);
  EXPECT_EQ(b[3], 0x34);
  auto d = DecodeIserHeader(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->opcode, IserOpcode::kHello);
  EXPECT_EQ(d->max_version, 10);
  EXPECT_EQ(d->min_or_cur_version, 1);
  EXPECT_EQ(d->ird_or_ord, 0x1234);

  IserHeader r;
  r.opcode = IserOpcode::kHelloReply;
  r.reject = true;
  r.ird_or_ord = 4;
  EncodeIserHeader(r, b);
  EXPECT_EQ(b[0], 0x31);
  auto dr = DecodeIserHeader(b);
  ASSERT_TRUE(dr.ok());
  EXPECT_TRUE(dr->reject);
  EXPECT_EQ(dr->ird_or_ord, 4);
}

TEST(IserHeaderTest, RejectsShortUnknownAndOversizedHello) {
  std::vector<uint8_t> msg(kIserHeaderSize - 1, 0);
  msg[0] = 0x10;
  EXPECT_FALSE(DecodeIserHeader(msg).ok());
  std::vector<uint8_t> unknown(kIserHeaderSize, 0);
  for (uint8_t op : {0x00, 0x40, 0x50, 0xF0}) {
    unknown[0] = op;
    EXPECT_FALSE(DecodeIserHeader(unknown).ok()) << int{op};
  }
  std::vector<uint8_t> long_hello(kIserHeaderSize + 1, 0);
  long_hello[0] = 0x20;
  EXPECT_FALSE(DecodeIserHeader(long_hello).ok());
  EXPECT_FALSE(DecodeIserHeader({}).ok());
}

}  // namespace
}  // namespace iser::iser_transport
