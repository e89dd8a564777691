//! The HTTP API: routes, request parsing and the JSON answers. Every error is JSON
//! (`{"error": "..."}`) with the status that says whose fault it was.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use graft::modality::Modality;
use graft::run::Student;
use serde_json::{Value, json};

use crate::ServeOptions;
use crate::batch::{Inputs, Queue, Refused};
use crate::metrics::{Metrics, Reason};

/// A student behind the API.
pub struct Endpoint {
    pub name: String,
    pub student: Arc<Student>,
    pub queue: Queue,
}

/// What every handler shares.
pub struct App {
    /// The first is the default (`/v1/predict`, `/v1/model`).
    pub endpoints: Vec<Endpoint>,
    pub metrics: Arc<Metrics>,
    pub options: ServeOptions,
}

impl App {
    fn endpoint(&self, name: Option<&str>) -> Result<&Endpoint, Failure> {
        match name {
            None => Ok(&self.endpoints[0]),
            Some(name) => self.endpoints.iter().find(|endpoint| endpoint.name == name).ok_or_else(|| {
                let known: Vec<&str> = self.endpoints.iter().map(|endpoint| endpoint.name.as_str()).collect();
                Failure::new(
                    StatusCode::NOT_FOUND,
                    format!("no student `{name}` here (students: {})", known.join(", ")),
                )
            }),
        }
    }
}

/// An error answer.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    body: Value,
    retry_after: bool,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure { status, body: json!({ "error": message.into() }), retry_after: false }
    }

    /// 400 for inputs that cannot be used: the message, and each such input's entry
    /// ([`input_error`]).
    fn bad_inputs(message: String, inputs: Vec<Value>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": message, "inputs": inputs }),
            retry_after: false,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The router, with every answer counted in `/metrics`.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/v1/predict", post(predict_default))
        .route("/v1/model", get(model_default))
        .route("/v1/students", get(students))
        .route("/v1/students/{name}", get(model_named))
        .route("/v1/students/{name}/predict", post(predict_named))
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            Failure::new(StatusCode::NOT_FOUND, "no such route (see GET /v1/model, POST /v1/predict)")
        })
        // The handlers bound bodies themselves (a declared length over the limit is refused
        // before a byte is read).
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

/// Counts each answer by route and status, and predictions' latency.
async fn count(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let post = request.method() == axum::http::Method::POST;
    let route = match request.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some("/v1/predict" | "/v1/students/{name}/predict") if post => "predict",
        Some("/v1/model" | "/v1/students" | "/v1/students/{name}") => "model",
        Some("/healthz") => "healthz",
        Some("/metrics") => "metrics",
        _ => "other",
    };
    let response = next.run(request).await;
    app.metrics.request(route, response.status().as_u16(), started.elapsed());
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let queued: Vec<(String, usize)> =
        app.endpoints.iter().map(|endpoint| (endpoint.name.clone(), endpoint.queue.waiting())).collect();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render(&queued)).into_response()
}

async fn students(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({ "students": app.endpoints.iter().map(describe).collect::<Vec<_>>() }))
}

async fn model_default(State(app): State<Arc<App>>) -> Result<Json<Value>, Failure> {
    Ok(Json(describe(app.endpoint(None)?)))
}

async fn model_named(State(app): State<Arc<App>>, Path(name): Path<String>) -> Result<Json<Value>, Failure> {
    Ok(Json(describe(app.endpoint(Some(&name))?)))
}

/// What `/v1/model` says of a student: the run's classes, teacher, strategy and metrics, and
/// what to send it.
fn describe(endpoint: &Endpoint) -> Value {
    let header = endpoint.student.header();
    let accepts = match header.modality {
        Modality::Image => json!([
            "multipart/form-data (one image per file part)",
            "image/* or application/octet-stream (one image as the body)"
        ]),
        Modality::Text => json!(["application/json: {\"texts\": [\"...\"]}"]),
    };
    json!({
        "name": endpoint.name,
        "modality": header.modality,
        "teacher": header.teacher,
        "strategy": header.strategy.to_string(),
        "classes": header.classes,
        "metrics": header.metrics,
        "graft_version": header.graft_version,
        "accepts": accepts,
    })
}

async fn predict_default(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Json<Value>, Failure> {
    predict(&app, None, query.as_deref(), request).await
}

async fn predict_named(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Json<Value>, Failure> {
    predict(&app, Some(&name), query.as_deref(), request).await
}

/// What a prediction request asked for.
struct Asked {
    inputs: Inputs,
    /// Per input: the file name of a multipart part, if it had one.
    names: Vec<Option<String>>,
    top_k: Option<usize>,
}

async fn predict(app: &App, name: Option<&str>, query: Option<&str>, request: Request) -> Result<Json<Value>, Failure> {
    let endpoint = app.endpoint(name)?;
    let reject = |reason: Reason, failure: Failure| {
        app.metrics.rejected(reason);
        failure
    };
    let mut top_k = top_k_from_query(query).map_err(|failure| reject(Reason::BadInput, failure))?;
    let modality = endpoint.student.header().modality;
    let asked = read_inputs(app, modality, request).await.map_err(|(reason, failure)| reject(reason, failure))?;
    top_k = top_k.or(asked.top_k);
    let count = asked.inputs.len();
    if count == 0 {
        return Err(reject(Reason::BadInput, Failure::new(StatusCode::BAD_REQUEST, "the request holds no inputs")));
    }
    if count > app.options.max_inputs {
        return Err(reject(
            Reason::TooLarge,
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{count} inputs in one request; this server takes at most {}", app.options.max_inputs),
            ),
        ));
    }
    if let Inputs::Images(images) = &asked.inputs {
        check_sizes(images, &asked.names, app.options.max_image_pixels)
            .map_err(|failure| reject(Reason::BadInput, failure))?;
    }
    let answer = match endpoint.queue.submit(asked.inputs) {
        Ok(answer) => answer,
        Err(Refused::Full) => {
            let mut failure = Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy: its prediction queue is full; retry shortly",
            );
            failure.retry_after = true;
            return Err(reject(Reason::Overloaded, failure));
        }
        Err(Refused::Closed) => {
            return Err(reject(
                Reason::Overloaded,
                Failure::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"),
            ));
        }
    };
    let rows = match answer.await {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => return Err(reject(Reason::Internal, Failure::new(StatusCode::INTERNAL_SERVER_ERROR, error))),
        Err(_) => {
            return Err(reject(
                Reason::Internal,
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "the prediction worker stopped"),
            ));
        }
    };
    let unreadable: Vec<Value> = rows
        .iter()
        .enumerate()
        .filter_map(|(index, row)| row.as_ref().err().map(|error| input_error(index, &asked.names, error)))
        .collect();
    if !unreadable.is_empty() {
        let message = format!("{} of {count} inputs could not be read", unreadable.len());
        return Err(reject(Reason::BadInput, Failure::bad_inputs(message, unreadable)));
    }
    let classes = endpoint.student.classes().len();
    let top_k = top_k.unwrap_or(5).clamp(1, classes);
    let predictions: Vec<Value> = rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| {
            let row = row.unwrap_or_default();
            let mut prediction = json!({ "index": index, "top": endpoint.student.top_k(&row, top_k) });
            if let Some(Some(name)) = asked.names.get(index) {
                prediction["name"] = json!(name);
            }
            prediction
        })
        .collect();
    Ok(Json(json!({ "student": endpoint.name, "predictions": predictions })))
}

fn input_error(index: usize, names: &[Option<String>], error: &str) -> Value {
    let mut entry = json!({ "index": index, "error": error });
    if let Some(Some(name)) = names.get(index) {
        entry["name"] = json!(name);
    }
    entry
}

fn top_k_from_query(query: Option<&str>) -> Result<Option<usize>, Failure> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "top_k" {
            return value.parse::<usize>().ok().filter(|&k| k > 0).map(Some).ok_or_else(|| {
                Failure::new(StatusCode::BAD_REQUEST, format!("top_k is a whole number above 0, not `{value}`"))
            });
        }
    }
    Ok(None)
}

/// Refuses images whose header declares more pixels than the server decodes (a decompression
/// bomb declares a huge image in a small file), before their decode is queued.
fn check_sizes(images: &[Vec<u8>], names: &[Option<String>], max_pixels: u64) -> Result<(), Failure> {
    let refused: Vec<Value> = images
        .iter()
        .enumerate()
        .filter_map(|(index, bytes)| {
            let (width, height) = graft::data::image::declared_dimensions(bytes)?;
            let pixels = u64::from(width) * u64::from(height);
            (pixels > max_pixels).then(|| {
                let reason = format!(
                    "its header declares {width} x {height} pixels, more than the {max_pixels} this server decodes"
                );
                input_error(index, names, &reason)
            })
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let message = format!("{} of {} inputs are too large to decode", refused.len(), images.len());
    Err(Failure::bad_inputs(message, refused))
}

type Rejection = (Reason, Failure);

/// The request's inputs, by its content type; the body is read within the size limit and the
/// read timeout.
async fn read_inputs(app: &App, modality: Modality, request: Request) -> Result<Asked, Rejection> {
    let options = &app.options;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim().to_owned();
    let accepted = match modality {
        Modality::Image => {
            essence == "multipart/form-data" || essence.starts_with("image/") || essence == "application/octet-stream"
        }
        Modality::Text => essence == "application/json" || essence == "multipart/form-data",
    };
    if !accepted {
        let wanted = match modality {
            Modality::Image => {
                "an image student takes multipart/form-data (image files), or one image as the body (image/*, application/octet-stream)"
            }
            Modality::Text => "a text student takes application/json: {\"texts\": [\"...\"]}",
        };
        let got = if essence.is_empty() { "no content type".to_owned() } else { format!("`{essence}`") };
        return Err((Reason::MediaType, Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{got}: {wanted}"))));
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, options).await?;
    let bad = |message: String| (Reason::BadInput, Failure::new(StatusCode::BAD_REQUEST, message));
    if essence == "multipart/form-data" {
        let request = Request::from_parts(parts, Body::from(bytes));
        let mut multipart = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|rejection| bad(format!("unreadable multipart body: {}", rejection.body_text())))?;
        let (mut data, mut names) = (Vec::new(), Vec::new());
        while let Some(field) =
            multipart.next_field().await.map_err(|error| bad(format!("unreadable multipart body: {error}")))?
        {
            let name = field.file_name().or(field.name()).map(str::to_owned);
            let content = field.bytes().await.map_err(|error| bad(format!("unreadable multipart part: {error}")))?;
            data.push(content.to_vec());
            names.push(name);
            if data.len() > options.max_inputs {
                break;
            }
        }
        let inputs = match modality {
            Modality::Image => Inputs::Images(data),
            Modality::Text => Inputs::Texts(
                data.into_iter()
                    .enumerate()
                    .map(|(index, text)| {
                        String::from_utf8(text).map_err(|_| bad(format!("multipart part {index} is not UTF-8 text")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        return Ok(Asked { inputs, names, top_k: None });
    }
    if essence == "application/json" {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TextRequest {
            texts: Vec<String>,
            top_k: Option<usize>,
        }
        let asked: TextRequest = serde_json::from_slice(&bytes)
            .map_err(|error| bad(format!("the body is not {{\"texts\": [\"...\"], \"top_k\": K}}: {error}")))?;
        let names = vec![None; asked.texts.len()];
        return Ok(Asked { inputs: Inputs::Texts(asked.texts), names, top_k: asked.top_k.filter(|&k| k > 0) });
    }
    Ok(Asked { inputs: Inputs::Images(vec![bytes.to_vec()]), names: vec![None], top_k: None })
}

/// The body, refused with 413 when its declared length (or what arrives) passes the limit, and
/// with 408 when it does not arrive within the read timeout.
async fn read_body(headers: &HeaderMap, body: Body, options: &ServeOptions) -> Result<axum::body::Bytes, Rejection> {
    let limit = options.max_body_bytes;
    let too_large = |size: String| {
        (
            Reason::TooLarge,
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a body of {size}; this server takes at most {limit} bytes"),
            ),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&declared| declared > limit as u64) {
        return Err(too_large(format!("{declared} bytes")));
    }
    match tokio::time::timeout(options.read_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let over =
                std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if over {
                Err(too_large("more bytes".to_owned()))
            } else {
                Err((
                    Reason::BadInput,
                    Failure::new(StatusCode::BAD_REQUEST, format!("the body could not be read: {error}")),
                ))
            }
        }
        Err(_) => Err((
            Reason::Timeout,
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", options.read_timeout.as_secs_f64()),
            ),
        )),
    }
}

/// What a connection past the server's limit is answered before it is closed.
pub fn too_many_connections() -> Vec<u8> {
    let body = r#"{"error": "too many open connections; retry shortly"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
