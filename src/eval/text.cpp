#include "janus/eval/text.h"

#include <clocale>
#include <cstdint>
#include <cwctype>

#include <locale.h>

namespace janus::eval {
namespace {

// Decodes one code point at s[i]; returns its length in bytes (0 when the bytes there are not valid UTF-8).
int decode(const std::string& s, std::size_t i, char32_t& cp) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const std::size_t n = s.size();
  const unsigned char c = b(i);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  int len = 0;
  char32_t min = 0;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  for (int k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

void encode(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Python's str.isspace() set.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

locale_t utf8_locale() {
  static locale_t loc = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
    if (l == static_cast<locale_t>(0)) l = newlocale(LC_CTYPE_MASK, "C.utf8", static_cast<locale_t>(0));
    return l;
  }();
  return loc;
}

char32_t lower_cp(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  const locale_t loc = utf8_locale();
  if (loc == static_cast<locale_t>(0)) return c;
  return static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), loc));
}

// Splits s into (byte offset, length, code point) units; an invalid byte is its own unit with cp = 0xFFFFFFFF.
template <class F>
void for_each_cp(const std::string& s, F&& f) {
  std::size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    int len = decode(s, i, cp);
    if (len == 0) {
      len = 1;
      cp = 0xFFFFFFFF;
    }
    f(i, static_cast<std::size_t>(len), cp);
    i += len;
  }
}

}  // namespace

bool is_valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    const int len = decode(s, i, cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string utf8_lower(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for_each_cp(s, [&](std::size_t i, std::size_t len, char32_t cp) {
    if (cp == 0xFFFFFFFF) {
      out += s[i];
    } else {
      encode(lower_cp(cp), out);
    }
    (void)len;
  });
  return out;
}

std::vector<std::string> split_whitespace(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  for_each_cp(s, [&](std::size_t i, std::size_t len, char32_t cp) {
    if (cp != 0xFFFFFFFF && is_space(cp)) {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur.append(s, i, len);
      in_word = true;
    }
  });
  if (in_word) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == sep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

std::string strip_whitespace(const std::string& s) {
  std::size_t begin = std::string::npos, end = 0;
  for_each_cp(s, [&](std::size_t i, std::size_t len, char32_t cp) {
    if (cp == 0xFFFFFFFF || !is_space(cp)) {
      if (begin == std::string::npos) begin = i;
      end = i + len;
    }
  });
  if (begin == std::string::npos) return "";
  return s.substr(begin, end - begin);
}

}  // namespace janus::eval
