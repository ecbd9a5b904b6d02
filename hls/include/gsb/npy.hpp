/**
 * gsb/npy.hpp: read and write .npy files (testbench only, never synthesized).
 *
 * gsbsim writes its test vectors as .npy; the testbenches read them with
 * gsb::npy::load<T>() and compare element by element.  Supported: format
 * version 1.0 (2.0 is also read), C order, little-endian dtypes int8 ('<i1' or
 * '|i1'), uint8 ('|u1'), int16, uint16, int32 ('<i4'), uint32, int64 ('<i8')
 * and uint64 ('<u8').  The requested C++ type must match the file's dtype
 * exactly; anything else (wrong dtype, Fortran order, truncated data, wrong
 * shape) throws gsb::npy::error naming the file and the problem.
 */
#ifndef GSB_NPY_HPP
#define GSB_NPY_HPP

#ifdef __SYNTHESIS__
#error "gsb/npy.hpp is a testbench helper and cannot be synthesized"
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace gsb {
namespace npy {

struct error : std::runtime_error {
    explicit error(const std::string& what) : std::runtime_error(what) {}
};

/** The dtype string(s) of each supported element type; the first is the one written. */
template <typename T> struct dtype;
template <> struct dtype<int8_t>   { static const char* name() { return "|i1"; } static const char* alt() { return "<i1"; } };
template <> struct dtype<uint8_t>  { static const char* name() { return "|u1"; } static const char* alt() { return "<u1"; } };
template <> struct dtype<int16_t>  { static const char* name() { return "<i2"; } static const char* alt() { return "<i2"; } };
template <> struct dtype<uint16_t> { static const char* name() { return "<u2"; } static const char* alt() { return "<u2"; } };
template <> struct dtype<int32_t>  { static const char* name() { return "<i4"; } static const char* alt() { return "<i4"; } };
template <> struct dtype<uint32_t> { static const char* name() { return "<u4"; } static const char* alt() { return "<u4"; } };
template <> struct dtype<int64_t>  { static const char* name() { return "<i8"; } static const char* alt() { return "<i8"; } };
template <> struct dtype<uint64_t> { static const char* name() { return "<u8"; } static const char* alt() { return "<u8"; } };

/** An n-dimensional array in C order. */
template <typename T>
struct array {
    std::vector<T> data;
    std::vector<std::size_t> shape;

    std::size_t size() const { return data.size(); }
    const T& operator[](std::size_t i) const { return data[i]; }
    T& operator[](std::size_t i) { return data[i]; }
};

inline std::string shape_str(const std::vector<std::size_t>& shape) {
    std::ostringstream os;
    os << "(";
    for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
    if (shape.size() == 1) os << ",";
    os << ")";
    return os.str();
}

namespace detail {

inline bool host_is_little_endian() {
    const uint16_t probe = 1;
    unsigned char first;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

/** The text after `'key':` in a header dict, with leading spaces skipped. */
inline std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
    const std::string quoted = "'" + key + "'";
    std::size_t pos = header.find(quoted);
    if (pos == std::string::npos) throw error(path + ": .npy header has no '" + key + "' entry");
    pos = header.find(':', pos + quoted.size());
    if (pos == std::string::npos) throw error(path + ": malformed .npy header");
    ++pos;
    while (pos < header.size() && header[pos] == ' ') ++pos;
    return header.substr(pos);
}

inline std::vector<std::size_t> parse_shape(const std::string& value, const std::string& path) {
    if (value.empty() || value[0] != '(') throw error(path + ": malformed shape in .npy header");
    const std::size_t close = value.find(')');
    if (close == std::string::npos) throw error(path + ": malformed shape in .npy header");
    std::vector<std::size_t> shape;
    std::string token;
    for (std::size_t i = 1; i <= close; ++i) {
        const char c = value[i];
        if (c >= '0' && c <= '9') {
            token += c;
        } else if (c == ',' || c == ')') {
            if (!token.empty()) shape.push_back(std::stoull(token));
            token.clear();
        } else if (c != ' ' && c != 'L') {
            throw error(path + ": malformed shape in .npy header");
        }
    }
    return shape;
}

inline std::size_t product(const std::vector<std::size_t>& shape) {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
}

}  // namespace detail

/** Load `path`; its dtype must be the one of T. */
template <typename T>
array<T> load(const std::string& path) {
    if (!detail::host_is_little_endian()) throw error(path + ": big-endian hosts are not supported");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw error(path + ": cannot open .npy file");
    char magic[8];
    if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
        throw error(path + ": not a .npy file (bad magic)");
    const unsigned major = (unsigned char)magic[6];
    std::size_t header_len = 0;
    unsigned char len_bytes[4] = {0, 0, 0, 0};
    if (major == 1) {
        if (!f.read(reinterpret_cast<char*>(len_bytes), 2)) throw error(path + ": truncated .npy header");
        header_len = len_bytes[0] | (std::size_t(len_bytes[1]) << 8);
    } else if (major == 2) {
        if (!f.read(reinterpret_cast<char*>(len_bytes), 4)) throw error(path + ": truncated .npy header");
        header_len = len_bytes[0] | (std::size_t(len_bytes[1]) << 8) | (std::size_t(len_bytes[2]) << 16) |
                     (std::size_t(len_bytes[3]) << 24);
    } else {
        throw error(path + ": unsupported .npy format version " + std::to_string(major));
    }
    std::string header(header_len, '\0');
    if (!f.read(&header[0], header_len)) throw error(path + ": truncated .npy header");

    const std::string descr_value = detail::header_value(header, "descr", path);
    const std::size_t q = descr_value.find('\'', 1);
    if (descr_value.empty() || descr_value[0] != '\'' || q == std::string::npos)
        throw error(path + ": malformed 'descr' in .npy header");
    const std::string descr = descr_value.substr(1, q - 1);
    if (descr != dtype<T>::name() && descr != dtype<T>::alt())
        throw error(path + ": dtype '" + descr + "' does not match the expected '" + dtype<T>::name() + "'");
    if (detail::header_value(header, "fortran_order", path).compare(0, 5, "False") != 0)
        throw error(path + ": Fortran-order arrays are not supported (save a C-contiguous array)");

    array<T> a;
    a.shape = detail::parse_shape(detail::header_value(header, "shape", path), path);
    a.data.resize(detail::product(a.shape));
    if (!a.data.empty() && !f.read(reinterpret_cast<char*>(a.data.data()), a.data.size() * sizeof(T)))
        throw error(path + ": truncated data: expected " + std::to_string(a.data.size()) + " elements of shape " +
                    shape_str(a.shape));
    if (f.peek() != std::char_traits<char>::eof()) throw error(path + ": trailing bytes after the array data");
    return a;
}

/** Load `path` and require the given shape. */
template <typename T>
array<T> load(const std::string& path, const std::vector<std::size_t>& expected_shape) {
    array<T> a = load<T>(path);
    if (a.shape != expected_shape)
        throw error(path + ": shape " + shape_str(a.shape) + " does not match the expected " +
                    shape_str(expected_shape));
    return a;
}

/** Write a version 1.0, C-order .npy file. */
template <typename T>
void save(const std::string& path, const std::vector<T>& data, const std::vector<std::size_t>& shape) {
    if (data.size() != detail::product(shape))
        throw error(path + ": " + std::to_string(data.size()) + " elements do not fill shape " + shape_str(shape));
    std::string header = std::string("{'descr': '") + dtype<T>::name() +
                         "', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
    // magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64
    const std::size_t unpadded = 10 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header += '\n';
    if (header.size() > 65535) throw error(path + ": .npy header too long for format 1.0");
    std::ofstream f(path, std::ios::binary);
    if (!f) throw error(path + ": cannot create .npy file");
    const unsigned char lenb[2] = {(unsigned char)(header.size() & 0xFF), (unsigned char)(header.size() >> 8)};
    f.write("\x93NUMPY\x01\x00", 8);
    f.write(reinterpret_cast<const char*>(lenb), 2);
    f.write(header.data(), header.size());
    if (!data.empty()) f.write(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(T));
    if (!f) throw error(path + ": write failed");
}

}  // namespace npy
}  // namespace gsb

#endif  // GSB_NPY_HPP
