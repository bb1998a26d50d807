#pragma once
// The built-in Shapes benchmark: deterministic procedural scenes of coloured 2-D shapes, written in the real
// formats (COCO captions, VQA v2, NLVR2, GenEval-style prompts) plus moving-shape videos and primitive-solid
// point clouds, and an analytic GenEval-style checker. Formats: docs/data.md.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace janus {

// Colour and shape vocabularies (index = id).
const std::vector<std::string>& shapes_colours();  // red yellow green cyan blue magenta
const std::vector<std::string>& shapes_kinds();    // circle square triangle star
const std::vector<std::string>& shapes_sizes();    // small large
const std::vector<std::string>& shapes_solids();   // sphere cube cone cylinder torus

struct ShapeObject {
  int colour = 0;
  int kind = 0;
  int size = 0;           // 0 small, 1 large
  double cx = 0, cy = 0;  // centre in pixels
  double radius = 0;      // circumradius in pixels
  double angle = 0;       // rotation (radians) for triangle/star
};

struct ShapesScene {
  int64_t id = 0;
  int64_t image_size = 64;
  std::vector<ShapeObject> objects;
};

// Scene `index` of a split: depends only on (seed, split, index).
ShapesScene make_shapes_scene(uint64_t seed, const std::string& split, int64_t index, int64_t image_size);
// uint8 [S, S, 3] RGB.
at::Tensor render_shapes_scene(const ShapesScene& scene);
// >= 3 captions from varied templates.
std::vector<std::string> shapes_captions(const ShapesScene& scene, uint64_t seed);
// What an image shows does not fix its captions: the generator also chooses the order of scene.objects (which pair
// the relation captions name, the listing order) and, from the seed, whether some objects' sizes are mentioned.
// For each caption text possible for the scene, the probability that it is among shapes_captions(scene, seed) when
// those hidden choices are uniform (every object order, every size-mention bit). Scoring each text by it is the
// best any model that sees the image can do at retrieval with identical-text counting (janus_eval's Shapes
// retrieval ceiling, docs/eval.md).
std::map<std::string, double> shapes_caption_probabilities(const ShapesScene& scene);
// The scene of one `images[]` entry of a Shapes captions file (what janus_data shapes writes there: id, width and
// the objects' colour, shape, size, cx, cy, radius). InputError naming the image when the objects are missing or
// use a name outside the vocabularies.
ShapesScene shapes_scene_from_json(const nlohmann::json& image);

// The template of a Shapes NLVR2 statement (what janus_data shapes writes to nlvr2/*.jsonl): "total_count" ("there
// are five shapes in total"), "both_colour" ("both images contain a red shape"), "left_more" ("the left image
// contains more shapes than the right image"), "exactly_one_kind" ("exactly one image contains a star") or
// "right_has" ("the right image has a red circle"); "" for any other sentence. janus_eval's NLVR2 accuracy by kind.
std::string shapes_nlvr2_statement_kind(const std::string& sentence);

// What a caption says about where things are, checked against its scene (janus_eval's Shapes caption metrics
// "position"): a region caption of a one-object scene ("a red circle in the top left of the picture"), or a
// relation caption naming two objects the scene has exactly one of each ("a small red circle to the left of a blue
// square"; the truth is the generator's dominant-axis relation). Anything else is kind kNone.
struct ShapesPositionCheck {
  enum class Kind { kNone, kRegion, kRelation } kind = Kind::kNone;
  bool horizontal = false;  // region: its left / centre / right is the object's third
  bool vertical = false;    // region: its top / middle / bottom is the object's third
  bool axis = false;        // relation: left/right vs above/below is the dominant axis
  bool correct = false;     // region: both thirds; relation: the relation itself
};
ShapesPositionCheck shapes_caption_position(const ShapesScene& scene, const std::string& caption);

// GenEval-style prompt: objects with colour/shape/count and an optional relation between object 0 and 1.
struct PromptObject {
  std::string colour;
  std::string shape;
  int64_t count = 1;
};
struct PromptSpec {
  std::vector<PromptObject> objects;
  std::string relation;  // "" or left_of, right_of, above, below (object 0 relative to object 1)
  nlohmann::json to_json() const;
  static PromptSpec from_json(const nlohmann::json& j);  // InputError on malformed specs
  std::string prompt() const;                            // text, e.g. "a photo of a red circle left of a blue square"
  // The inverse of prompt(): the spec of a prompt in the Shapes grammar ("a photo of two red circles to the left of a
  // blue square and a green star", "a photo of a red circle, a cyan star and three blue squares"). InputError naming
  // the first word it cannot read for any other text.
  static PromptSpec from_prompt(const std::string& text);
};

// TIFA-style questions a prompt implies, in the Shapes VQA templates (the questions a model's VQA head was trained
// on), each with the answer the prompt implies: "is there a <c> <k>?" -> yes per object; "how many shapes are
// there?" -> the total; "how many <c> shapes are there?" per colour; "what shape is the <c> object?" / "what color
// is the <k>?" for an object alone in its colour / kind; and the four "is the <c0 k0> <relation> the <c1 k1>?"
// (yes for the prompt's relation, no for the other three) when it has one.
struct ImpliedQuestion {
  std::string question, answer;
};
std::vector<ImpliedQuestion> shapes_prompt_questions(const PromptSpec& spec);
PromptSpec shapes_prompt_spec(const ShapesScene& scene);

struct DetectedShape {
  std::string colour;
  std::string shape;
  double cx = 0, cy = 0, area = 0;
};
// Segments an RGB uint8 [H, W, 3] image by hue and classifies each blob's contour.
std::vector<DetectedShape> shapes_detect(const at::Tensor& rgb_u8);

struct GenevalScore {
  double colour = 0;     // fraction of prompt objects whose colour is present
  double shape = 0;      // fraction of prompt objects whose shape is present
  double count = 0;      // fraction of prompt objects with exactly `count` (colour, shape) matches
  double position = 1;   // 1/0 for the relation (1 when the prompt has none)
  double overall = 0;    // mean of the four
  bool correct = false;  // everything right (GenEval's binary score)
  std::vector<DetectedShape> detected;
};
GenevalScore shapes_geneval_check(const at::Tensor& rgb_u8, const PromptSpec& spec);

struct ShapesOptions {
  std::string out;
  int64_t train = 1000;
  int64_t val = 200;
  int64_t size = 64;
  uint64_t seed = 0;
  int64_t videos = 16;  // per split
  int64_t video_frames = 8;
  int64_t clouds = 20;  // per split
  int64_t cloud_points = 2048;
  int64_t threads = 1;
};
struct ShapesStats {
  int64_t images = 0;
  double image_seconds = 0;  // rendering + PNG writing of the scene images
  double total_seconds = 0;
};
ShapesStats generate_shapes(const ShapesOptions& opts);

// Point cloud of a primitive solid's surface (kind indexes shapes_solids()), float [n, 3].
at::Tensor shapes_solid_points(int kind, int64_t n, uint64_t seed);

}  // namespace janus
