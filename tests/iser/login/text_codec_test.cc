#include "iser/login/text_codec.h"

#include <string>

#include "gtest/gtest.h"

namespace iser::login {
namespace {

using namespace std::string_literals;

TEST(TextCodecTest, ParsesOrderedPairs) {
  auto kv = ParseText("InitiatorName=iqn.x\0SessionType=Normal\0Empty=\0"s);
  ASSERT_TRUE(kv.ok()) << kv.status();
  ASSERT_EQ(kv->size(), 3u);
  EXPECT_EQ((*kv)[0], (KeyValue{"InitiatorName", "iqn.x"}));
  EXPECT_EQ((*kv)[1], (KeyValue{"SessionType", "Normal"}));
  EXPECT_EQ((*kv)[2], (KeyValue{"Empty", ""}));
}

TEST(TextCodecTest, ValueMayContainEquals) {
  auto kv = ParseText("X-a=b=c\0"s);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ((*kv)[0].value, "b=c");
}

TEST(TextCodecTest, SkipsPaddingAndToleratesMissingFinalNul) {
  auto kv = ParseText("A=1\0\0\0\0B=2"s);
  ASSERT_TRUE(kv.ok());
  ASSERT_EQ(kv->size(), 2u);
  EXPECT_EQ((*kv)[1].value, "2");
  EXPECT_TRUE(ParseText(""s)->empty());
}

TEST(TextCodecTest, RejectsMalformed) {
  EXPECT_FALSE(ParseText("NoEquals\0"s).ok());
  EXPECT_FALSE(ParseText("=value\0"s).ok());
  EXPECT_FALSE(ParseText("Bad Key=1\0"s).ok());
  EXPECT_FALSE(ParseText("A=1\0A=2\0"s).ok());  // duplicates are a protocol error
  EXPECT_FALSE(ParseText(std::string(64, 'K') + "=1"s + '\0').ok());
  EXPECT_TRUE(ParseText(std::string(63, 'K') + "=1"s + '\0').ok());
  EXPECT_FALSE(ParseText("TargetAlias=" + std::string(256, 'a') + '\0').ok());
  EXPECT_TRUE(ParseText("TargetAlias=" + std::string(255, 'a') + '\0').ok());
  // Each list element may be 255 bytes.
  EXPECT_TRUE(ParseText("X-l=" + std::string(255, 'a') + "," + std::string(255, 'b')).ok());
  // Binary CHAP values may be long.
  EXPECT_TRUE(ParseText("CHAP_C=0x" + std::string(2048, 'a') + '\0').ok());
  EXPECT_FALSE(ParseText("CHAP_C=0x" + std::string(8192, 'a') + '\0').ok());
}

TEST(TextCodecTest, KeyNames) {
  EXPECT_TRUE(IsValidKeyName("iSCSIProtocolLevel"));
  EXPECT_TRUE(IsValidKeyName("X-com.example.foo_bar+1@x"));
  EXPECT_TRUE(IsValidKeyName("X#org.iana.key"));
  EXPECT_FALSE(IsValidKeyName("X#"));
  EXPECT_FALSE(IsValidKeyName("A#b"));
  EXPECT_FALSE(IsValidKeyName(""));
}

TEST(TextCodecTest, Numbers) {
  EXPECT_EQ(*ParseNumber("0"), 0u);
  EXPECT_EQ(*ParseNumber("262144"), 262144u);
  EXPECT_EQ(*ParseNumber("0x40000"), 262144u);
  EXPECT_EQ(*ParseNumber("0X4"), 4u);
  EXPECT_EQ(*ParseNumber("0x123"), 0x123u);  // odd digit count
  EXPECT_EQ(*ParseNumber("0bAAQAAA=="), 0x40000u);
  EXPECT_EQ(*ParseNumber("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(ParseNumber("18446744073709551616").ok());
  EXPECT_FALSE(ParseNumber("0x10000000000000000").ok());
  EXPECT_EQ(*ParseNumber("0x0000000000000000001"), 1u);
  EXPECT_FALSE(ParseNumber("").ok());
  EXPECT_FALSE(ParseNumber("12a").ok());
  EXPECT_FALSE(ParseNumber("-1").ok());
  EXPECT_FALSE(ParseNumber("0x").ok());
  EXPECT_FALSE(ParseNumber("0bA").ok());
}

TEST(TextCodecTest, BoolsAndLists) {
  EXPECT_TRUE(*ParseBool("Yes"));
  EXPECT_FALSE(*ParseBool("No"));
  EXPECT_FALSE(ParseBool("yes").ok());
  auto l = ParseList("CRC32C,None");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->size(), 2u);
  EXPECT_FALSE(ParseList("a,,b").ok());
  EXPECT_FALSE(ParseList("").ok());
}

TEST(TextCodecTest, BinaryRoundTrip) {
  std::string bytes = "\x00\x01\xfe\xff\x7f"s;
  EXPECT_EQ(EncodeHex(bytes), "0x0001feff7f");
  EXPECT_EQ(*ParseBinary(EncodeHex(bytes)), bytes);
  for (size_t n = 0; n < 8; ++n) {
    std::string b = bytes.substr(0, n % bytes.size()) + std::string(n, 'z');
    if (b.empty()) continue;
    EXPECT_EQ(*ParseBinary(EncodeBase64(b)), b) << n;
  }
  EXPECT_EQ(EncodeBase64("f"), "0bZg==");
  EXPECT_EQ(EncodeBase64("fo"), "0bZm8=");
  EXPECT_EQ(EncodeBase64("foo"), "0bZm9v");
  EXPECT_FALSE(ParseBinary("abc").ok());
  EXPECT_FALSE(ParseBinary("0xzz").ok());
  EXPECT_FALSE(ParseBinary("0bZg=a").ok());
  EXPECT_FALSE(ParseBinary("0b=Zg=").ok());
}

TEST(TextCodecTest, EncodeRoundTrip) {
  KeyValueList in = {{"A", "1"}, {"B", ""}, {"X-c", "x,y"}};
  std::string text = EncodeText(in);
  EXPECT_EQ(text, "A=1\0B=\0X-c=x,y\0"s);
  EXPECT_EQ(*ParseText(text), in);
}

}  // namespace
}  // namespace iser::login
